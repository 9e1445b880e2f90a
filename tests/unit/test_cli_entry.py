"""cli.entry, the console script: main()'s exit code and all of its output, then os._exit (no teardown).

It is run in a fresh interpreter (os._exit would end pytest's), with the
test's sys.path so that it is this tree's code, and a fake runc.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

RUN_ENTRY = "import sys; sys.path[:0] = {path!r}; sys.argv[1:] = {argv!r}\nfrom runc_ckpt.cli import entry\nentry()\n"


def _entry(argv: list[str], tmp_path, runc_script: str = "#!/bin/sh\nexit 0\n") -> subprocess.CompletedProcess[str]:
    runc = tmp_path / "runc"
    runc.write_text(runc_script)
    runc.chmod(0o755)
    cfg = tmp_path / "runc-ckpt.yaml"
    cfg.write_text(f"state_dir: {tmp_path / 'state'}\n")
    env = dict(os.environ, RUNC_CKPT_RUNC=str(runc), RUNC_CKPT_CONFIG=str(cfg))
    return subprocess.run([sys.executable, "-c", RUN_ENTRY.format(path=sys.path, argv=argv)], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=60, check=False)


def test_all_of_a_long_output_is_flushed_before_the_exit(tmp_path):
    out = _entry(["checkpoint", "--help"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("NAME:\n   runc checkpoint")
    assert "--export" in out.stdout and out.stdout.endswith("\n") and len(out.stdout) > 2000


def test_mains_exit_code_and_its_error_line_come_through(tmp_path):
    out = _entry(["checkpoint", "--export", str(tmp_path / "a.tar.zst"), "nosuch"], tmp_path,
                 "#!/bin/sh\necho 'container does not exist' >&2\nexit 1\n")
    assert out.returncode == 1
    assert out.stderr.count("level=error") == 1 and "does not exist" in out.stderr
    assert not (tmp_path / "a.tar.zst").exists()


def test_stdout_closed_by_the_reader_still_exits_as_before(tmp_path):
    """A flush that fails (EPIPE) is left to the interpreter: non-zero exit, no hang."""
    runc = tmp_path / "runc"
    runc.write_text("#!/bin/sh\nexit 0\n")
    runc.chmod(0o755)
    proc = subprocess.Popen([sys.executable, "-c", RUN_ENTRY.format(path=sys.path, argv=["checkpoint", "--help"])],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=REPO,
                            env=dict(os.environ, RUNC_CKPT_RUNC=str(runc)))
    assert proc.stdout is not None
    proc.stdout.close()
    assert proc.wait(timeout=60) != 0


@pytest.mark.parametrize("modules", [[
    "runc_ckpt.commands.checkpoint", "runc_ckpt.commands.restore", "runc_ckpt.commands.inspect",
    "runc_ckpt.commands.image", "runc_ckpt.commands.key", "runc_ckpt.commands.version",
    "runc_ckpt.checkpoint.flow", "runc_ckpt.archive.export", "runc_ckpt.restore.importer",
    "runc_ckpt.migrate.sender", "runc_ckpt.migrate.receiver", "runc_ckpt.image.transport",
    "runc_ckpt.checkpoint.incremental_export", "pycriu", "yaml", "jsonschema", "zstandard", "xxhash",
    "jwcrypto.jwe", "nacl.secret", "cryptography.hazmat.primitives.asymmetric.ec", "google.protobuf",
]], ids=["everything-a-call-loads"])
def test_nothing_loaded_registers_an_exit_handler_that_os_exit_would_skip(modules):
    code = ("import sys, atexit, threading, importlib\n"
            f"sys.path[:0] = {sys.path!r}\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "print(atexit._ncallbacks(), len(threading._threading_atexits))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.split() == ["0", "0"]
