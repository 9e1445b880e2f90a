"""runc_ckpt.base.progress: shown on a terminal, silent on a pipe and with JSON logs."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
import textwrap

import pytest

from runc_ckpt.base import progress
from runc_ckpt.base.globalflags import GlobalFlags
from runc_ckpt.base.progress import NullProgress, Progress

CHILD = textwrap.dedent("""
    import sys, time
    from runc_ckpt.base.globalflags import GlobalFlags
    from runc_ckpt.base.progress import Progress
    flags = GlobalFlags()
    flags.log_format = sys.argv[1]
    p = Progress.create(flags, "export", total=3 * 1000 * 1024)
    print(type(p).__name__, flush=True)
    for _ in range(3):
        for _ in range(1000):           # a burst: at most one redraw for it
            p.update(1024)
        time.sleep(0.25)
    p.close()
""")


def run_child(stderr_kind: str, log_format: str = "text") -> tuple[str, str]:
    """Run CHILD with stderr on a pty or a pipe: (stdout, what stderr received)."""
    if stderr_kind == "pipe":
        out = subprocess.run([sys.executable, "-c", CHILD, log_format], capture_output=True,
                             text=True, timeout=60, check=True)
        return out.stdout, out.stderr
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-c", CHILD, log_format], stdout=subprocess.PIPE,
                                stderr=slave, text=True)
        os.close(slave)
        slave = -1
        received = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            received += chunk
        stdout, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        return stdout, received.decode()
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


def test_terminal_gets_the_display_redrawn_in_place():
    stdout, shown = run_child("pty")
    assert stdout.strip() == "Progress"
    draws = shown.count("\rexport: ")
    assert 2 <= draws <= 6, shown  # 3 bursts (+ the final draw), never one per update
    assert "export: " in shown
    assert "2.9 MiB / 2.9 MiB (100%)" in shown
    assert "/s" in shown
    assert shown.endswith("\r\n") or shown.endswith("\n")


def test_pipe_gets_nothing():
    stdout, shown = run_child("pipe")
    assert stdout.strip() == "NullProgress"
    assert shown == ""


def test_json_logs_get_nothing_even_on_a_terminal():
    stdout, shown = run_child("pty", log_format="json")
    assert stdout.strip() == "NullProgress"
    assert shown == ""


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_redraws_at_most_five_times_a_second():
    clock, out = FakeClock(), io.StringIO()
    p = Progress("import", None, out, clock=clock)
    for _ in range(50):
        p.update(10)
    assert out.getvalue().count("\r") == 1
    clock.now += 0.15
    p.update(10)
    assert out.getvalue().count("\r") == 1
    clock.now += 0.1
    p.update(10)
    assert out.getvalue().count("\r") == 2


def test_line_with_and_without_total():
    clock = FakeClock()
    p = Progress("export", 4 * 1024 * 1024, io.StringIO(), clock=clock)
    p.done = 1024 * 1024
    clock.now += 2
    assert p.line(clock.now) == "export: 1.0 MiB / 4.0 MiB (25%), 512.0 KiB/s"
    q = Progress("import", None, io.StringIO(), clock=clock)
    q.done = 300
    assert q.line(clock.now + 1) == "import: 300 B, 300 B/s"


def test_shorter_line_overwrites_a_longer_one():
    clock, out = FakeClock(), io.StringIO()
    p = Progress("x", None, out, clock=clock)
    p.update(5000)
    first = out.getvalue()
    clock.now += 10
    p.update(0)  # the rate drops, so the line gets shorter
    second = out.getvalue()[len(first):]
    assert len(second) >= len(first)


def test_close_ends_the_line_and_write_errors_are_ignored():
    out = io.StringIO()
    p = Progress("x", 10, out, clock=FakeClock())
    p.update(10)
    p.close()
    assert out.getvalue().endswith("\n")
    broken = io.StringIO()
    q = Progress("x", None, broken, clock=FakeClock())
    broken.close()
    q.update(1)  # must not raise
    q.close()


def test_nothing_drawn_means_close_writes_nothing():
    out = io.StringIO()
    Progress("x", None, out).close()
    assert out.getvalue() == ""


@pytest.mark.parametrize("n,text", [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"),
                                    (5 * 1024 ** 3, "5.0 GiB"), (2 * 1024 ** 5, "2048.0 TiB")])
def test_human(n, text):
    assert progress.human(n) == text


def test_create_returns_a_null_object_off_a_terminal():
    p = Progress.create(GlobalFlags(), "x", stream=io.StringIO())
    assert isinstance(p, NullProgress)
    with p:
        p.update(5)
