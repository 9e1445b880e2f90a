"""Issue 19 without runc: one removal helper, lock fds never inherited, a stray's inherited lock replaced."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from runc_ckpt.runtime import lock, mounttable

PKG = Path(lock.__file__).resolve().parents[1]


def test_every_recursive_removal_goes_through_safe_remove():
    offenders = []
    for path in PKG.rglob("*.py"):
        if path.name == "safe_remove.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\brmtree\(", line) and "safe_remove.remove_tree" not in line:
                offenders.append(f"{path.relative_to(PKG)}:{n}: {line.strip()}")
    assert not offenders, offenders


def test_mount_points_below_are_deepest_first(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text("1 0 0:1 / / rw - ext4 /dev/x rw\n"
                    "2 1 0:2 / /a/b rw - tmpfs t rw\n"
                    "3 2 0:3 / /a/b/c\\040d rw - tmpfs t rw\n"
                    "4 1 0:4 / /a/bc rw - tmpfs t rw\n")
    assert mounttable.below("/a/b", str(info)) == ["/a/b/c d", "/a/b"]


def test_lock_fd_is_not_inherited(tmp_path):
    with lock.hold(str(tmp_path), "k", "test", 5) as held:
        assert not os.get_inheritable(held.fd)
        out = subprocess.run(["sh", "-c", f"ls /proc/self/fd/{held.fd} 2>/dev/null || echo closed"],
                             capture_output=True, text=True, close_fds=False, check=False)
        assert "closed" in out.stdout


STRAY = r"""
import os, subprocess, sys, time
sys.path.insert(0, sys.argv[2])
from runc_ckpt.runtime import lock
cm = lock.hold(sys.argv[1], "k", "killed", 5)
held = cm.__enter__()
os.set_inheritable(held.fd, True)        # as runc's pass_fds made it: the fd lives on in a stray
p = subprocess.Popen(["sleep", "60"], pass_fds=(held.fd,), start_new_session=True,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(p.pid, flush=True)
os._exit(0)                              # the holder dies; the stray keeps the lock
"""


def test_a_lock_held_by_a_dead_callers_stray_fd_is_replaced_not_waited_for(tmp_path):
    out = subprocess.run([sys.executable, "-c", STRAY, str(tmp_path), str(PKG.parent)], capture_output=True,
                         text=True, check=True)
    stray = int(out.stdout.split()[0])
    try:
        t0 = time.monotonic()
        with lock.hold(str(tmp_path), "k", "next", 30):
            pass
        assert time.monotonic() - t0 < 5
    finally:
        os.kill(stray, 9)


def test_holder_temp_files_of_killed_writers_are_swept(tmp_path):
    locks = tmp_path / lock.LOCK_DIR
    locks.mkdir()
    stale = locks / ".k.holder.runc-ckpt-abc123.tmp"
    stale.write_text("{")
    with lock.hold(str(tmp_path), "k", "test", 5):
        pass
    assert not stale.exists()
