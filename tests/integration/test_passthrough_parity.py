"""runc-ckpt passes every runc command through unchanged: same stdout, stderr, exit code and log lines.

Each check runs the same arguments through the real runc and through the
installed front end, against a private --root with busybox bundles on
overlay, and compares. Where output holds a timestamp, it is masked.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.integration.conftest import wait_for

pytestmark = pytest.mark.integration

_TIME = re.compile(r'(time="|"time":")[^"]*"')


def mask(text: str) -> str:
    return _TIME.sub(r'\1T"', text)


def call(binary: str, *args: str, **kw) -> subprocess.CompletedProcess[str]:
    if "input" not in kw:
        kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run([binary, *args], capture_output=True, text=True, check=False, timeout=60, **kw)


def same(real_runc: str, ours: str, *args: str, **kw) -> subprocess.CompletedProcess[str]:
    """Run args through both; assert identical exit code, stdout and (masked) stderr."""
    direct = call(real_runc, *args, **kw)
    wrapped = call(ours, *args, **kw)
    assert (wrapped.returncode, wrapped.stdout, mask(wrapped.stderr)) == \
        (direct.returncode, direct.stdout, mask(direct.stderr)), args
    return wrapped


def create(binary: str, root: Path, bundle, cid: str) -> None:
    # Container stdio must not be our pipes, or runc create would hold them open.
    subprocess.run([binary, "--root", str(root), "create", "--bundle", str(bundle.path), cid],
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True, timeout=60)


def test_lifecycle_through_runc_ckpt_matches_runc(make_bundle, containers, real_runc, runc_ckpt_bin):
    root = str(containers.root)
    b = make_bundle()
    cid = f"pt-{uuid.uuid4().hex[:8]}"
    containers.ids.append(cid)
    create(runc_ckpt_bin, containers.root, b, cid)
    assert json.loads(same(real_runc, runc_ckpt_bin, "--root", root, "state", cid).stdout)["status"] == "created"
    assert call(runc_ckpt_bin, f"--root={root}", "start", cid).returncode == 0
    wait_for(lambda: b.counter() > 1, what="counter to start")
    for args in (("state", cid), ("list",), ("list", "--format", "json"), ("list", "-q")):
        same(real_runc, runc_ckpt_bin, "--root", root, *args)
    # The counter forks a `sleep` every 0.1 s, so only the init pid is stable.
    init = json.loads(call(real_runc, "--root", root, "state", cid).stdout)["pid"]
    ps = [call(x, "--root", root, "ps", "--format", "json", cid) for x in (real_runc, runc_ckpt_bin)]
    assert [init in json.loads(p.stdout) for p in ps] == [True, True]
    ps = [call(x, "--root", root, "ps", cid, "-o", "pid,comm") for x in (real_runc, runc_ckpt_bin)]
    assert ps[0].stdout.splitlines()[:2] == ps[1].stdout.splitlines()[:2]
    same(real_runc, runc_ckpt_bin, "-root", root, "--log-format=json", "state", cid)

    out = same(real_runc, runc_ckpt_bin, "--root", root, "exec", cid, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (out.returncode, out.stdout, out.stderr) == (3, "out\n", "err\n")
    out = call(runc_ckpt_bin, "--root", root, "exec", cid, "cat", input="from stdin")
    assert (out.returncode, out.stdout) == (0, "from stdin")
    proc = Path(b.path / "proc.json")
    proc.write_text(json.dumps({"args": ["sh", "-c", "echo $X"], "cwd": "/", "env": ["PATH=/bin", "X=from-process-json"],
                                "user": {"uid": 0, "gid": 0}}))
    out = call(runc_ckpt_bin, "--root", root, "exec", "--process", str(proc), cid)
    assert (out.returncode, out.stdout) == (0, "from-process-json\n"), out.stderr

    assert call(runc_ckpt_bin, "--root", root, "pause", cid).returncode == 0
    assert json.loads(same(real_runc, runc_ckpt_bin, "--root", root, "state", cid).stdout)["status"] == "paused"
    frozen = b.counter()
    same(real_runc, runc_ckpt_bin, "--root", root, "pause", cid)  # already paused: same error both ways
    assert call(runc_ckpt_bin, "--root", root, "resume", cid).returncode == 0
    wait_for(lambda: b.counter() > frozen, what="counter to go on after resume")

    assert call(runc_ckpt_bin, "--root", root, "update", "--memory", "104857600", cid).returncode == 0
    stats = [json.loads(call(x, "--root", root, "events", "--stats", cid).stdout) for x in (real_runc, runc_ckpt_bin)]
    assert stats[0]["type"] == stats[1]["type"] == "stats"
    assert stats[0]["id"] == stats[1]["id"] == cid
    assert stats[0]["data"]["memory"]["usage"]["limit"] == stats[1]["data"]["memory"]["usage"]["limit"] == 104857600
    assert sorted(stats[0]["data"]) == sorted(stats[1]["data"])

    assert call(runc_ckpt_bin, "--root", root, "kill", cid, "KILL").returncode == 0
    wait_for(lambda: containers.status(cid) == "stopped", what="container to stop")
    same(real_runc, runc_ckpt_bin, "--root", root, "state", cid)
    assert call(runc_ckpt_bin, "--root", root, "delete", cid).returncode == 0
    same(real_runc, runc_ckpt_bin, "--root", root, "state", cid)
    assert containers.status(cid) is None


def test_run_foreground_exit_code(make_bundle, containers, real_runc, runc_ckpt_bin):
    codes = []
    for binary in (real_runc, runc_ckpt_bin):
        b = make_bundle(args=["sh", "-c", "echo ran; exit 5"])
        cid = f"fg-{uuid.uuid4().hex[:8]}"
        containers.ids.append(cid)
        out = call(binary, "--root", str(containers.root), "run", "--bundle", str(b.path), cid)
        codes.append((out.returncode, out.stdout))
        call(real_runc, "--root", str(containers.root), "delete", "--force", cid)
    assert codes == [(5, "ran\n"), (5, "ran\n")]


def test_spec_writes_the_same_file(tmp_path, real_runc, runc_ckpt_bin):
    for args in ((), ("--rootless",)):
        files = []
        for name, binary in (("direct", real_runc), ("wrapped", runc_ckpt_bin)):
            d = tmp_path / f"{name}{len(args)}"
            d.mkdir()
            assert call(binary, "spec", *args, cwd=d).returncode == 0
            files.append((d / "config.json").read_text())
            # A second spec refuses to overwrite: same message and code.
            again = [call(x, "spec", cwd=d) for x in (real_runc, runc_ckpt_bin)]
            assert again[0].returncode == again[1].returncode == 1
            assert mask(again[0].stderr) == mask(again[1].stderr)
        assert files[0] == files[1]


@pytest.mark.parametrize("args", [
    ["features"], ["help"], ["--help"], ["-h"], ["help", "state"], ["h", "exec"], ["state", "--help"],
    ["list", "--help"], [], ["--version", "--help"],
])
def test_informational_commands(runc_root, real_runc, runc_ckpt_bin, args):
    same(real_runc, runc_ckpt_bin, "--root", str(runc_root), *args)


@pytest.mark.parametrize("args", [
    ["state", "no-such-container"],
    ["delete", "no-such-container"],
    ["kill", "no-such-container"],
    ["exec", "no-such-container", "true"],
    ["state"],
    ["nosuchcommand"],                 # runc exits 3
    ["--bogus", "list"],
    ["---debug", "list"],
    ["--debug=maybe", "list"],
    ["--log"],
    ["list", "--bogus"],
    ["--rootless=maybe", "state", "no-such-container"],
    ["--", "state", "no-such-container"],
    ["--log-format", "json", "state", "no-such-container"],
    ["--log-format", "xml", "state", "no-such-container"],
    ["--log", "/dev/stderr", "state", "no-such-container"],
    ["-debug", "state", "no-such-container"],
])
def test_errors_are_runcs_own(runc_root, real_runc, runc_ckpt_bin, args):
    out = same(real_runc, runc_ckpt_bin, "--root", str(runc_root), *args)
    assert out.returncode != 0
    if args == ["nosuchcommand"]:
        assert out.returncode == 3


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_log_file_parity(tmp_path, runc_root, real_runc, runc_ckpt_bin, fmt):
    logs = []
    for name, binary in (("direct", real_runc), ("wrapped", runc_ckpt_bin)):
        log = tmp_path / f"{name}.log"
        log.write_text("earlier line\n")
        out = call(binary, "--root", str(runc_root), "--log", str(log), f"--log-format={fmt}",
                   "--debug", "state", "no-such-container")
        assert out.returncode == 1
        assert out.stderr == "container does not exist\n"
        logs.append(mask(log.read_text()))
    assert logs[0] == logs[1]
    assert logs[0].startswith("earlier line\n")


def test_runc_ckpt_errors_use_the_callers_log(tmp_path, runc_root, runc_ckpt_bin):
    log = tmp_path / "oci-log"
    out = subprocess.run(["env", "-i", "RUNC_CKPT_RUNC=/nonexistent/runc", runc_ckpt_bin, "--root", str(runc_root),
                          "--log", str(log), "--log-format", "json", "state", "x"],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 1
    lines = log.read_text().splitlines()
    assert len(lines) == 1
    obj = json.loads(lines[0])
    assert obj["level"] == "error" and "/nonexistent/runc" in obj["msg"]
    assert out.stderr == obj["msg"] + "\n"


def test_works_with_an_empty_environment(make_bundle, containers, runc_ckpt_bin):
    """podman runs the runtime with only PATH and XDG_RUNTIME_DIR: no venv, no RUNC_CKPT_*."""
    b = make_bundle()
    cid = containers.run(b)
    for env in ([], ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "XDG_RUNTIME_DIR=/run"]):
        out = subprocess.run(["env", "-i", *env, runc_ckpt_bin, "--root", str(containers.root), "state", cid],
                             capture_output=True, text=True, check=False)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["status"] == "running"
        out = subprocess.run(["env", "-i", *env, runc_ckpt_bin, "--version"], capture_output=True, text=True,
                             check=False)
        assert out.returncode == 0 and out.stdout.startswith("runc version ") and "\nrunc-ckpt: " in out.stdout


def test_installed_as_runc_first_on_path(make_bundle, containers, tmp_path, runc_ckpt_bin):
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "runc").symlink_to(runc_ckpt_bin)
    b = make_bundle()
    cid = containers.run(b, runc_bin=str(shim / "runc"))
    env = ["PATH=" + f"{shim}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    out = subprocess.run(["env", "-i", *env, "runc", "--root", str(containers.root), "state", cid],
                         capture_output=True, text=True, check=False, timeout=10)
    assert json.loads(out.stdout)["status"] == "running"
    out = subprocess.run(["env", "-i", *env, "runc", "--version"], capture_output=True, text=True, check=False,
                         timeout=10)
    assert out.stdout.startswith("runc version ") and "\nreal-runc: /usr/sbin/runc\n" in out.stdout


def test_version_names_ours_and_runcs(real_runc, runc_ckpt_bin):
    from runc_ckpt import __version__
    ours = call(runc_ckpt_bin, "--version")
    theirs = call(real_runc, "--version")
    assert ours.returncode == 0
    # runc's text unchanged and first (podman matches the first line), then ours as key: value lines.
    assert ours.stdout == theirs.stdout + f"runc-ckpt: {__version__}\nreal-runc: {real_runc}\n"


def test_podman_probes(runc_ckpt_bin):
    """podman decides checkpoint support by `checkpoint --help` (exit 0) and pod restore
    support by `restore --lsm-mount-context` saying "flag needs an argument"."""
    out = call(runc_ckpt_bin, "checkpoint", "--help")
    assert out.returncode == 0 and "--image-path" in out.stdout
    out = call(runc_ckpt_bin, "restore", "--lsm-mount-context")
    assert "flag needs an argument" in out.stdout + out.stderr
