"""Running hooks: state on stdin, env, args, failures, timeouts that kill the whole process group."""

from __future__ import annotations

import json
import os
import time

import pytest

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.globalflags import GlobalFlags
from runc_ckpt.settings import hooks

STATE = {"ociVersion": "1.0.2", "id": "c1", "status": "running", "pid": 4242, "bundle": "/b",
         "annotations": {"io.runc-ckpt.hooks": "x"}}


@pytest.fixture
def flags(tmp_path):
    f = GlobalFlags()
    f.log = str(tmp_path / "runc.log")
    f.log_format = "json"
    return f


def log_lines(flags):
    try:
        with open(flags.log) as f:
            return [json.loads(line) for line in f]
    except FileNotFoundError:
        return []


def script(tmp_path, name, body, timeout=None, env=(), args=None):
    path = tmp_path / f"{name}.sh"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return hooks.Hook(name=name, file=str(tmp_path / f"{name}.json"), path=str(path),
                      args=tuple(args or (str(path),)), env=tuple(env), timeout=timeout,
                      stages=tuple(hooks.STAGES))


def test_state_on_stdin_env_and_args(tmp_path, flags):
    out = tmp_path / "out"
    h = script(tmp_path, "echo", f'cat > {out}.stdin; echo "$1|$2" > {out}.args; env > {out}.env\n',
               env=["FOO=bar baz", "EMPTY="], args=["argv0", "one", "two"])
    hooks.run_stage("precheckpoint", [h], STATE, flags)
    assert json.loads((tmp_path / "out.stdin").read_text()) == STATE
    assert (tmp_path / "out.args").read_text() == "one|two\n"
    env = dict(line.split("=", 1) for line in (tmp_path / "out.env").read_text().splitlines() if "=" in line)
    assert env["FOO"] == "bar baz" and env["EMPTY"] == ""
    assert env["RUNC_CKPT_HOOK_STAGE"] == "precheckpoint" and env["RUNC_CKPT_HOOK_NAME"] == "echo"
    # The environment is the hook's own, as for OCI hooks: nothing leaks from ours.
    assert "PYTEST_CURRENT_TEST" not in env
    assert log_lines(flags) == []


def test_args_include_argv0_as_execv(tmp_path, flags):
    # busybox picks its applet from argv[0]: "sh" only if args[0] reaches it unchanged.
    out = tmp_path / "out"
    h = hooks.Hook(name="bb", file="/h/bb.json", path="/bin/busybox",
                   args=("sh", "-c", f'echo "$0 $1" > {out}', "zero", "one"), env=(), timeout=None,
                   stages=hooks.STAGES)
    hooks.run_stage("postcheckpoint", [h], STATE, flags)
    assert out.read_text() == "zero one\n"


def test_hooks_run_in_order(tmp_path, flags):
    order = tmp_path / "order"
    hs = [script(tmp_path, n, f"echo {n} >> {order}\n") for n in ("a", "b", "c")]
    hooks.run_stage("postrestore", hs, STATE, flags)
    assert order.read_text().split() == ["a", "b", "c"]


@pytest.mark.parametrize("stage", ["precheckpoint", "prerestore"])
def test_failing_pre_hook_raises_naming_it_and_stops(tmp_path, flags, stage):
    after = tmp_path / "after"
    bad = script(tmp_path, "bad", "echo 'disk is full' >&2; exit 3\n")
    later = script(tmp_path, "later", f"touch {after}\n")
    with pytest.raises(RuncCkptError) as e:
        hooks.run_stage(stage, [bad, later], STATE, flags)
    assert str(e.value) == f"{stage} hook bad ({bad.file}): exit status 3: disk is full"
    assert not after.exists()


@pytest.mark.parametrize("stage", ["postcheckpoint", "postrestore"])
def test_failing_post_hook_warns_and_the_rest_run(tmp_path, flags, stage):
    after = tmp_path / "after"
    bad = script(tmp_path, "bad", "echo oops; exit 7\n")
    later = script(tmp_path, "later", f"touch {after}\n")
    hooks.run_stage(stage, [bad, later], STATE, flags)
    assert after.exists()
    lines = log_lines(flags)
    assert len(lines) == 1
    assert lines[0]["level"] == "warning"
    assert lines[0]["msg"] == f"{stage} hook bad ({bad.file}): exit status 7: oops"


def test_missing_program_is_a_failure_naming_the_hook(tmp_path, flags):
    h = hooks.Hook(name="gone", file="/h/gone.json", path=str(tmp_path / "nope"), args=("nope",), env=(),
                   timeout=None, stages=hooks.STAGES)
    with pytest.raises(RuncCkptError, match=r"precheckpoint hook gone \(/h/gone.json\): cannot run .*nope: "
                                            "No such file or directory"):
        hooks.run_stage("precheckpoint", [h], STATE, flags)


def test_not_executable_is_a_failure(tmp_path, flags):
    h = script(tmp_path, "noexec", "exit 0\n")
    os.chmod(h.path, 0o644)
    with pytest.raises(RuncCkptError, match="Permission denied"):
        hooks.run_stage("prerestore", [h], STATE, flags)


def test_killed_by_signal(tmp_path, flags):
    h = script(tmp_path, "sig", "kill -TERM $$\n")
    with pytest.raises(RuncCkptError, match="killed by signal 15"):
        hooks.run_stage("precheckpoint", [h], STATE, flags)


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("stage", ["precheckpoint", "postcheckpoint"])
def test_timeout_kills_the_whole_process_group(tmp_path, flags, stage):
    pidfile = tmp_path / "grandchild"
    # The hook leaves a grandchild that ignores SIGTERM, then hangs itself.
    h = script(tmp_path, "slow", f"(trap '' TERM; sleep 60) & echo $! > {pidfile}; sleep 60\n", timeout=0.5)
    start = time.monotonic()
    if stage.startswith("pre"):
        with pytest.raises(RuncCkptError, match=rf"{stage} hook slow \(.*\): timed out after 0.5s"):
            hooks.run_stage(stage, [h], STATE, flags)
    else:
        hooks.run_stage(stage, [h], STATE, flags)
        assert "timed out after 0.5s" in log_lines(flags)[0]["msg"]
    assert time.monotonic() - start < 5
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)


def test_default_timeout_applies_when_hook_sets_none(tmp_path, flags):
    h = script(tmp_path, "slow", "sleep 60\n")
    start = time.monotonic()
    with pytest.raises(RuncCkptError, match="timed out after 0.3s"):
        hooks.run_stage("prerestore", [h], STATE, flags, default_timeout=0.3)
    assert time.monotonic() - start < 5


def test_hook_ignoring_stdin_with_a_big_state_does_not_block(tmp_path, flags):
    h = script(tmp_path, "ignore", "exit 0\n", timeout=5)
    big = dict(STATE, annotations={f"k{i}": "v" * 100 for i in range(2000)})
    hooks.run_stage("precheckpoint", [h], big, flags)


def test_background_child_holding_stdout_does_not_block(tmp_path, flags):
    h = script(tmp_path, "daemon", "sleep 3 & echo started\n", timeout=10)
    start = time.monotonic()
    hooks.run_stage("precheckpoint", [h], STATE, flags)
    assert time.monotonic() - start < 2


def test_output_is_logged_at_debug(tmp_path, flags):
    flags.debug = True
    h = script(tmp_path, "talk", "echo hello from hook\n")
    hooks.run_stage("postcheckpoint", [h], STATE, flags)
    msgs = [line["msg"] for line in log_lines(flags) if line["level"] == "debug"]
    assert msgs == ["postcheckpoint hook talk: exit status 0: hello from hook"]


def test_long_output_is_trimmed_in_the_error(tmp_path, flags):
    h = script(tmp_path, "long", "i=0; while [ $i -lt 200 ]; do echo line$i; i=$((i+1)); done; exit 1\n")
    with pytest.raises(RuncCkptError) as e:
        hooks.run_stage("precheckpoint", [h], STATE, flags)
    assert str(e.value).endswith("line199") and len(str(e.value)) < 500


def test_unknown_stage():
    with pytest.raises(ValueError):
        hooks.run_stage("predump", [], STATE, GlobalFlags())


def test_state_json_is_the_oci_state():
    st = hooks.state_json("c1", "creating", 0, "/b", None)
    assert st == {"ociVersion": "1.0.2", "id": "c1", "status": "creating", "pid": 0, "bundle": "/b",
                  "annotations": {}}
    assert hooks.state_json("c1", "running", 7, "/b", {"a": "b"})["annotations"] == {"a": "b"}


def test_huge_output_is_read_back_only_at_its_end(tmp_path, flags):
    flags.debug = True
    h = script(tmp_path, "chatty", "i=0; while [ $i -lt 3000 ]; do echo 0123456789abcdef0123456789; i=$((i+1)); "
                                   "done; echo the-end\n", timeout=20)
    hooks.run_stage("postcheckpoint", [h], STATE, flags)
    msg = log_lines(flags)[0]["msg"]
    assert msg.endswith("the-end") and len(msg) < 5000
