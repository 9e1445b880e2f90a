"""The progress display, wired: real `checkpoint --export` and `restore --import` through the front end.

A person at a terminal (stderr a pty) sees "export: ... MiB ... /s" and
"import: ..."; podman (stderr a pipe) and --log-format json see none of it.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from pathlib import Path

from tests.integration.conftest import wait_for
from tests.integration.test_restore_import_real import SCRIPT, as_new_host, restore_env

BIG = 3 << 20  # random volume data: the archive is several MiB, so sizes show in MiB


def run_on(stderr_kind: str, argv: list[str], env: dict) -> tuple[int, str]:
    """Run argv with stderr on a pty or a pipe; (exit code, what stderr received)."""
    if stderr_kind == "pipe":
        out = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True, env=env, timeout=120, check=False)
        return out.returncode, out.stderr
    master, slave = pty.openpty()
    received = b""
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave, env=env)
        os.close(slave)
        slave = -1
        deadline = time.monotonic() + 120
        # Read until the command has exited and the pty stays quiet: a restored
        # container keeps its own stdio, so EOF on the master is not guaranteed.
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every holder of the slave closed it
                    break
                if not chunk:
                    break
                received += chunk
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=10)
        return code, received.decode(errors="replace")
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


def final_line(shown: str) -> str:
    """The last state drawn (the pty turns the closing \\n into \\r\\n)."""
    return [part for part in shown.split("\r") if part.strip()][-1]


def round_trip(stderr_kind: str, make_bundle, containers, busybox_lower: Path, tmp_path: Path, runc_ckpt_bin: str,
               log_format: str = "text") -> tuple[str, str]:
    """Export a running container and import it back, both with stderr of that kind; (export, import) stderr."""
    b = make_bundle(args=["sh", "-c", SCRIPT], volumes={"vol1": "/data"})
    (b.volumes["vol1"] / "big").write_bytes(os.urandom(BIG))
    cid = containers.run(b)
    wait_for(lambda: b.counter() > 3, what="counter to start")
    env = restore_env(tmp_path)
    archive = tmp_path / "export.tar.zst"
    globals_ = [runc_ckpt_bin, "--root", str(containers.root), "--log-format", log_format]
    code, exported = run_on(stderr_kind, [*globals_, "checkpoint", "--export", str(archive), cid], env)
    assert code == 0, exported
    assert archive.stat().st_size > BIG
    before = b.counter()
    as_new_host(b, busybox_lower)
    code, imported = run_on(stderr_kind, [*globals_, "restore", "--import", str(archive), "--bundle", str(b.path),
                                          "-d"], env)
    assert code == 0, imported
    assert containers.status(cid) == "running"
    wait_for(lambda: b.counter() > before + 2, what="counter to continue after restore")
    assert (b.volumes["vol1"] / "big").stat().st_size == BIG
    return exported, imported


def test_terminal_sees_export_and_import_progress(make_bundle, containers, busybox_lower, tmp_path, runc_ckpt_bin):
    exported, imported = round_trip("pty", make_bundle, containers, busybox_lower, tmp_path, runc_ckpt_bin)
    last = final_line(exported)
    assert "\rexport: " in exported, exported
    assert " MiB / " in last and "(100%)" in last and "/s" in last, exported
    assert "\rimport: " in imported, imported
    last = final_line(imported)
    assert " MiB / " in last and "/s" in last, imported
    assert "Traceback" not in exported + imported


def test_pipe_sees_no_progress(make_bundle, containers, busybox_lower, tmp_path, runc_ckpt_bin):
    exported, imported = round_trip("pipe", make_bundle, containers, busybox_lower, tmp_path, runc_ckpt_bin)
    for text in (exported, imported):
        assert "export:" not in text and "import:" not in text and "/s" not in text, text
        assert "\r" not in text, text


def test_json_logs_see_no_progress_even_on_a_terminal(make_bundle, containers, busybox_lower, tmp_path,
                                                      runc_ckpt_bin):
    exported, imported = round_trip("pty", make_bundle, containers, busybox_lower, tmp_path, runc_ckpt_bin,
                                    log_format="json")
    for text in (exported, imported):
        assert "export:" not in text and "import:" not in text and "/s" not in text, text
