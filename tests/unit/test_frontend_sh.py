"""The sh front end (plugin/bin/runc-ckpt): which argv reach the real runc directly, which reach Python.

The front end is copied into a scratch bin dir next to a fake `runc-ckpt-py`
that prints "PY" and its argv, so every case shows where it went; a fake
runc prints its argv and exits with $FAKE_RC. Each run uses `env -i`, as
podman gives the runtime only PATH and XDG_RUNTIME_DIR.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

FRONT_END = REPO / "plugin" / "bin" / "runc-ckpt"
PASS_THROUGH = ["create", "start", "run", "state", "kill", "delete", "exec", "ps", "pause", "resume",
                "update", "events", "list", "spec", "features", "help", "h"]
FAKE = """#!/bin/sh
echo "{tag}"
for a do printf '[%s]\\n' "$a"; done
[ -n "$FAKE_STDIN" ] && cat
echo "to stderr" >&2
exit ${{FAKE_RC:-0}}
"""

GLOBAL_FORMS = [
    [],
    ["--debug"], ["-debug"], ["--debug=true"], ["-debug=false"],
    ["--systemd-cgroup"], ["-systemd-cgroup=1"],
    ["--log", "/tmp/l"], ["--log=/tmp/l"], ["-log", "/tmp/l"], ["-log=/tmp/l"], ["--log="],
    ["--log-format", "json"], ["--log-format=json"], ["-log-format", "json"], ["-log-format=json"],
    ["--root", "/r"], ["--root=/r"], ["-root", "/r"], ["-root=/r"],
    ["--criu", "/c"], ["--criu=/c"], ["-criu", "/c"], ["-criu=/c"],
    ["--rootless", "true"], ["--rootless=false"], ["-rootless", "auto"], ["-rootless=auto"],
    ["--root", "/x y/with space", "--log", "--weird value", "--log-format=json", "--debug", "--systemd-cgroup"],
]


def _exe(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture
def setup(tmp_path):
    """bin/runc-ckpt (the front end), bin/runc-ckpt-py (fake Python), real/runc (fake runc)."""
    front = tmp_path / "bin" / "runc-ckpt"
    _exe(front, FRONT_END.read_text())
    _exe(tmp_path / "bin" / "runc-ckpt-py", FAKE.format(tag="PY"))
    runc = _exe(tmp_path / "real" / "runc", FAKE.format(tag="RUNC"))
    return front, runc


def run(front: Path, argv: list[str], env: dict[str, str], **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["env", "-i", *[f"{k}={v}" for k, v in env.items()], str(front), *argv],
                          capture_output=True, text=True, check=False, **kw)


def expect(out: subprocess.CompletedProcess[str], tag: str, argv: list[str]) -> None:
    assert out.stdout.splitlines() == [tag, *[f"[{a}]" for a in argv]]


@pytest.mark.parametrize("sub", PASS_THROUGH)
@pytest.mark.parametrize("globals_", GLOBAL_FORMS, ids=lambda g: " ".join(g) or "none")
def test_runc_commands_exec_runc_with_argv_unchanged(setup, sub, globals_):
    front, runc = setup
    argv = [*globals_, sub, "--flag", "-x", "", "id with space"]
    out = run(front, argv, {"RUNC_CKPT_RUNC": str(runc), "FAKE_RC": "7"})
    expect(out, "RUNC", argv)
    assert out.returncode == 7
    assert out.stderr == "to stderr\n"


def test_stdin_reaches_runc(setup):
    front, runc = setup
    out = run(front, ["exec", "-p", "-", "c"], {"RUNC_CKPT_RUNC": str(runc), "FAKE_STDIN": "1"},
              input='{"args":["sh"]}')
    assert out.stdout.endswith('{"args":["sh"]}')


@pytest.mark.parametrize("argv", [
    ["checkpoint", "--help"], ["restore", "--lsm-mount-context"], ["--root", "/r", "checkpoint", "x"],
    ["--log=/l", "--log-format", "json", "restore", "-d", "x"], ["inspect", "x"],
    ["--version"], ["-v"], ["--help"], ["-h"], ["--config", "/c.yaml", "state", "x"], ["--config=/c", "list"],
    ["--", "state", "x"], ["--root", "/r", "--", "list"], ["--bogus", "list"], ["---debug", "list"],
    ["--log"], [], ["nosuchcmd"], ["init"], ["-", "x"], ["STATE", "x"],
])
def test_everything_else_reaches_python_unchanged(setup, argv):
    front, runc = setup
    out = run(front, argv, {"RUNC_CKPT_RUNC": str(runc), "FAKE_RC": "3"})
    expect(out, "PY", argv)
    assert out.returncode == 3


def test_runc_found_on_path_without_any_settings(setup, tmp_path):
    front, runc = setup
    out = run(front, ["--root", "/r", "state", "x"], {"PATH": f"{tmp_path / 'nothing'}:{runc.parent}"})
    expect(out, "RUNC", ["--root", "/r", "state", "x"])


def test_installed_as_runc_first_on_path_does_not_loop(setup, tmp_path):
    # containerd's BinaryName or a user may put runc-ckpt in front of runc under runc's name.
    front, runc = setup
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "runc").symlink_to(front)
    env = {"PATH": f"{shim}:{front.parent}:{runc.parent}"}
    expect(run(shim / "runc", ["state", "x"], env, timeout=10), "RUNC", ["state", "x"])
    expect(run(front, ["state", "x"], env, timeout=10), "RUNC", ["state", "x"])
    # Called as `runc` by name, through PATH, as an engine would.
    out = subprocess.run(["env", "-i", f"PATH={env['PATH']}", "runc", "list"], capture_output=True, text=True,
                         timeout=10, check=False)
    expect(out, "RUNC", ["list"])


def test_no_runc_anywhere_goes_to_python_for_the_error(setup, tmp_path):
    front, _ = setup
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "runc").symlink_to(front)
    expect(run(front, ["state", "x"], {"PATH": str(shim)}, timeout=10), "PY", ["state", "x"])


def test_python_is_found_beside_the_real_file_and_readlink_runs_only_for_a_symlink(setup, tmp_path):
    """Called by its own path, the front end execs the runc-ckpt-py beside it without running readlink
    (a fork and exec per call); called through a symlink elsewhere, it resolves the link to find it."""
    front, _ = setup
    tools = tmp_path / "tools"
    log = tmp_path / "readlink.log"
    _exe(tools / "readlink", f'#!/bin/sh\necho "$@" >> {log}\nexec /usr/bin/readlink "$@"\n')
    env = {"PATH": str(tools)}
    expect(run(front, ["checkpoint", "x"], env, timeout=10), "PY", ["checkpoint", "x"])
    assert not log.exists()
    link = tmp_path / "elsewhere" / "runc-ckpt"
    link.parent.mkdir()
    link.symlink_to(front)
    expect(run(link, ["checkpoint", "x"], env, timeout=10), "PY", ["checkpoint", "x"])
    assert log.read_text() == f"-f {link}\n"


@pytest.mark.parametrize("value", [lambda b: b / "runc-ckpt", lambda b: b / "missing", lambda b: b])
def test_bad_runc_ckpt_runc_goes_to_python(setup, value):
    front, runc = setup
    out = run(front, ["state", "x"], {"RUNC_CKPT_RUNC": str(value(front.parent)), "PATH": str(runc.parent)})
    expect(out, "PY", ["state", "x"])


def test_config_file_runc_key(setup, tmp_path):
    front, runc = setup
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"# comment\ncompress: zstd\nrunc:   {runc}  \nstate_dir: /x\n")
    out = run(front, ["list"], {"RUNC_CKPT_CONFIG": str(cfg), "PATH": "/nonexistent"})
    expect(out, "RUNC", ["list"])


@pytest.mark.parametrize("line", ["runc: '{r}'", 'runc: "{r}"', "runc: {r} # the real one", "runc: relative/runc",
                                  "runc:", "runc: {{a: 1}}"])
def test_config_spellings_sh_cannot_read_go_to_python(setup, tmp_path, line):
    front, runc = setup
    cfg = tmp_path / "c.yaml"
    cfg.write_text(line.format(r=runc) + "\n")
    out = run(front, ["list"], {"RUNC_CKPT_CONFIG": str(cfg), "PATH": str(runc.parent)})
    expect(out, "PY", ["list"])


def test_missing_named_config_goes_to_python(setup, tmp_path):
    front, runc = setup
    out = run(front, ["list"], {"RUNC_CKPT_CONFIG": str(tmp_path / "none.yaml"), "PATH": str(runc.parent)})
    expect(out, "PY", ["list"])


def test_runc_ckpt_runc_beats_config(setup, tmp_path):
    front, runc = setup
    cfg = tmp_path / "c.yaml"
    cfg.write_text("runc: /nonexistent/runc\n")
    out = run(front, ["list"], {"RUNC_CKPT_CONFIG": str(cfg), "RUNC_CKPT_RUNC": str(runc)})
    expect(out, "RUNC", ["list"])


def test_installed_front_end_reaches_real_python(runc_ckpt_bin, tmp_path):
    """The installed front end and runc-ckpt-py, under env -i, strip --config and exec runc."""
    runc = _exe(tmp_path / "real" / "runc", FAKE.format(tag="RUNC"))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"runc: '{runc}'\n")
    for argv, sent in ((["--root", "/r", "--config", str(cfg), "state", "x"], ["--root", "/r", "state", "x"]),
                       (["--config=" + str(cfg), "--", "list"], ["--", "list"])):
        out = run(Path(runc_ckpt_bin), argv, {"FAKE_RC": "5"})
        expect(out, "RUNC", sent)
        assert out.returncode == 5
    out = run(Path(runc_ckpt_bin), ["--", "list"], {"RUNC_CKPT_RUNC": str(runc), "PATH": "/nonexistent"})
    expect(out, "RUNC", ["--", "list"])
    out = run(Path(runc_ckpt_bin), ["--log-format=json", "state", "x"],
              {"RUNC_CKPT_RUNC": str(tmp_path / "missing"), "PATH": "/nonexistent"})
    assert out.returncode == 1
    assert out.stdout == ""
    assert '"level":"error"' in out.stderr and "missing" in out.stderr and "Traceback" not in out.stderr
