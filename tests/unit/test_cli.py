"""cli.main in process: which runc it execs and with what argv, version, and runc-format errors.

os.execv is replaced by a recorder that raises a BaseException (so cli's
catch-all cannot mistake it for an error), and pytest-subprocess fakes the
real runc where runc-ckpt runs it as a child (`--version`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runc_ckpt import __version__, cli
from runc_ckpt.base import realrunc
from tests.conftest import REPO

PASS_THROUGH = ["create", "start", "run", "state", "kill", "delete", "exec", "ps", "pause", "resume",
                "update", "events", "list", "spec", "features", "help", "init"]


class Execd(BaseException):
    def __init__(self, path: str, argv: list[str]) -> None:
        super().__init__(path)
        self.path = path
        self.argv = argv


@pytest.fixture
def fake_runc(tmp_path, monkeypatch) -> str:
    """An executable standing in for the real runc, named by $RUNC_CKPT_RUNC; exec is recorded."""
    path = tmp_path / "real" / "runc"
    path.parent.mkdir()
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    monkeypatch.setenv("RUNC_CKPT_RUNC", str(path))
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    monkeypatch.setenv("RUNC_CKPT_CONFIG", str(empty))

    def execv(p, argv):
        raise Execd(p, list(argv))

    monkeypatch.setattr(os, "execv", execv)
    return str(path)


def run_main(argv: list[str]) -> Execd:
    with pytest.raises(Execd) as e:
        cli.main(argv)
    return e.value


@pytest.mark.parametrize("sub", PASS_THROUGH)
@pytest.mark.parametrize("globals_", [[], ["--root", "/r"], ["--root=/r", "-debug", "--log-format", "json",
                                                              "-log=/l", "--systemd-cgroup", "--criu", "/c",
                                                              "-rootless=false"]])
def test_pass_through_execs_real_runc_with_argv_unchanged(fake_runc, sub, globals_):
    argv = [*globals_, sub, "--some-flag", "x", "c1"]
    e = run_main(argv)
    assert e.path == fake_runc
    assert e.argv == [fake_runc, *argv]


@pytest.mark.parametrize("argv", [["--bogus", "state"], ["--debug=maybe", "list"], ["--log"], [],
                                  ["--", "state", "x"], ["--help"], ["-h", "--version"], ["nosuchcmd", "x"]])
def test_whatever_runc_must_judge_goes_to_runc_unchanged(fake_runc, argv):
    e = run_main(argv)
    assert e.argv == [fake_runc, *argv]


def test_config_flag_names_runc_and_is_not_passed_on(tmp_path, fake_runc, monkeypatch):
    monkeypatch.delenv("RUNC_CKPT_RUNC")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"runc: {fake_runc}\n")
    e = run_main(["--root", "/r", "--config", str(cfg), "state", "x"])
    assert e.argv == [fake_runc, "--root", "/r", "state", "x"]


def test_config_from_environment_names_runc(tmp_path, fake_runc, monkeypatch):
    monkeypatch.delenv("RUNC_CKPT_RUNC")
    cfg = tmp_path / "env.yaml"
    cfg.write_text(f"# quoted: left to the YAML loader\nrunc: '{fake_runc}'\n")
    monkeypatch.setenv("RUNC_CKPT_CONFIG", str(cfg))
    assert run_main(["list"]).path == fake_runc


def test_environment_beats_config(tmp_path, fake_runc):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("runc: /usr/sbin/runc\n")
    assert run_main(["--config", str(cfg), "list"]).path == fake_runc


def _error_line(log: Path) -> dict:
    lines = log.read_text().splitlines()
    assert len(lines) == 1, lines
    obj = json.loads(lines[0])
    assert obj["level"] == "error" and set(obj) == {"level", "msg", "time"}
    return obj


@pytest.mark.parametrize("setup,expect", [
    (lambda t, m: m.setenv("RUNC_CKPT_RUNC", str(t / "missing")), "is not an executable runc"),
    (lambda t, m: m.setenv("RUNC_CKPT_RUNC", str(REPO / "plugin" / "bin" / "runc-ckpt")), "is not an executable runc"),
    (lambda t, m: (m.delenv("RUNC_CKPT_RUNC"), m.setenv("PATH", str(t)))[0], "cannot find the real runc"),
])
def test_no_real_runc_is_one_json_error(tmp_path, fake_runc, monkeypatch, capfd, setup, expect):
    setup(tmp_path, monkeypatch)
    log = tmp_path / "oci-log"
    assert cli.main(["--log", str(log), "--log-format=json", "state", "x"]) == 1
    assert expect in _error_line(log)["msg"]
    out, err = capfd.readouterr()
    assert out == "" and expect in err and "Traceback" not in err


def test_bad_config_file_is_one_text_error(tmp_path, fake_runc, monkeypatch, capfd):
    monkeypatch.delenv("RUNC_CKPT_RUNC")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("runc: [not, a, path]\n")
    assert cli.main(["--config", str(cfg), "state", "x"]) == 1
    err = capfd.readouterr().err
    assert err.startswith("time=") and "level=error" in err and str(cfg) in err and "runc" in err
    assert len(err.splitlines()) == 1


def test_missing_config_file_named_by_flag_or_environment_is_an_error(tmp_path, fake_runc, monkeypatch, capfd):
    assert cli.main(["--config", str(tmp_path / "nope.yaml"), "list"]) == 1
    assert "does not exist" in capfd.readouterr().err
    monkeypatch.setenv("RUNC_CKPT_CONFIG", str(tmp_path / "nope.yaml"))
    assert run_main(["list"]).path == fake_runc  # $RUNC_CKPT_RUNC wins without reading a file
    monkeypatch.delenv("RUNC_CKPT_RUNC")
    assert cli.main(["list"]) == 1
    assert "does not exist" in capfd.readouterr().err


def test_exec_failure_is_an_error_not_a_traceback(tmp_path, fake_runc, monkeypatch, capfd):
    def execv(p, argv):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(os, "execv", execv)
    assert cli.main(["state", "x"]) == 1
    err = capfd.readouterr().err
    assert f"exec {fake_runc}: Permission denied" in err and "Traceback" not in err


def test_unexpected_exception_is_one_error_line(tmp_path, fake_runc, monkeypatch, capfd):
    import runc_ckpt.commands.checkpoint as checkpoint

    def boom(inv):
        raise ValueError("bad value")
    monkeypatch.setattr(checkpoint, "run", boom)
    log = tmp_path / "log"
    assert cli.main(["--log", str(log), "--log-format", "json", "checkpoint", "x"]) == 1
    assert _error_line(log)["msg"] == "internal error: ValueError: bad value"
    assert "Traceback" not in capfd.readouterr().err


def test_own_error_exit_code_is_kept(tmp_path, fake_runc, monkeypatch, capfd):
    import runc_ckpt.commands.restore as restore
    from runc_ckpt.base.errors import RuncCkptError

    def fail(inv):
        raise RuncCkptError("no such archive", exit_code=2)
    monkeypatch.setattr(restore, "run", fail)
    assert cli.main(["restore", "x"]) == 2
    assert "msg=\"no such archive\"" in capfd.readouterr().err


@pytest.mark.parametrize("argv", [["--version"], ["-v"], ["--root", "/r", "-version", "state", "x"]])
def test_version_names_both(fake_runc, fp, capsys, argv):
    fp.register([fake_runc, "--version"], stdout="runc version 1.1.5\ncommit: v1.1.5\n")
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    # runc's lines unchanged and first (tools match the first line), then ours as key: value.
    assert out == f"runc version 1.1.5\ncommit: v1.1.5\nrunc-ckpt: {__version__}\nreal-runc: {fake_runc}\n"


def test_realrunc_skips_a_runc_that_is_runc_ckpt(tmp_path, monkeypatch):
    # runc-ckpt installed as `runc` (containerd's BinaryName), first on PATH.
    monkeypatch.delenv("RUNC_CKPT_RUNC", raising=False)
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / "runc").symlink_to(REPO / "plugin" / "bin" / "runc-ckpt")
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "runc").write_bytes((REPO / "plugin" / "bin" / "runc-ckpt").read_bytes())
    (copy / "runc").chmod(0o755)
    (second / "runc").write_text("#!/bin/sh\n")
    (second / "runc").chmod(0o755)
    monkeypatch.setenv("PATH", f"{first}:{copy}::{tmp_path / 'missing'}:{second}")
    assert realrunc.find() == str(second / "runc")
    assert realrunc.find(str(second / "runc")) == str(second / "runc")
