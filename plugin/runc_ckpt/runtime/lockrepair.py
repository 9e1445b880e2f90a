"""A container lock held by a dead runc-ckpt's fd that lives on in a stray process: see it, and replace the lock.

The kernel frees a flock when the last fd on it closes, so a lock cannot
outlive its holder -- unless the fd was inherited. runc-ckpt used to pass
its lock fds to runc, which passed them to `criu swrk`, whose half-restored
task survived a kill of the process group (it runs in a session of its own)
and kept the lock: the next call waited lock_timeout and failed, naming a
dead pid. Lock fds are close-on-exec now; this module repairs a lock that
is held that way anyway (an older runc-ckpt, a stray we do not know of).

/proc/locks names the process that TOOK a flock, not the one holding it
now. When that process is dead (pid gone, or its start time differs from
the holder file's) while the lock is still held, the holder is an inherited
fd: the lock file is unlinked (under a guard lock, and only if it is still
the same inode), so the next open creates a fresh lock that the live callers
then compete for. The stray keeps a lock on a file nobody opens any more.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os

from runc_ckpt.runtime import procscan

GUARD = ".break.lock"


def _lock_owners(st: os.stat_result) -> list[int]:
    """Pids /proc/locks names for FLOCKs on the inode of st."""
    want = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    owners = []
    try:
        with open("/proc/locks", encoding="ascii") as f:
            for line in f:
                fields = line.split()
                if "->" in fields:             # a waiter, not a holder
                    continue
                if len(fields) < 6 or fields[1] != "FLOCK":
                    continue
                try:
                    major, minor, ino = fields[5].split(":")
                    key = (int(major, 16), int(minor, 16), int(ino))
                    pid = int(fields[4])
                except ValueError:
                    continue
                if key == want:
                    owners.append(pid)
    except OSError:
        pass
    return owners


def _holder_start(holder: str, pid: int) -> int | None:
    try:
        with open(holder, encoding="utf-8") as f:
            info = json.load(f)
        return int(info["start"]) if int(info["pid"]) == pid and info.get("start") is not None else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def orphaned(lock_fd: int, holder: str) -> int | None:
    """The dead pid that took the lock behind lock_fd while a stray still holds it, else None."""
    owners = _lock_owners(os.fstat(lock_fd))
    for pid in owners:
        start = _holder_start(holder, pid)
        if not procscan.alive(pid, start):
            return pid
    return None


def replace(directory: str, path: str, lock_fd: int) -> bool:
    """Unlink path if it is still the inode behind lock_fd (guarded, so two callers never unlink a fresh one)."""
    guard = os.open(os.path.join(directory, GUARD), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(guard, fcntl.LOCK_EX)
        try:
            same = os.path.samestat(os.fstat(lock_fd), os.stat(path, follow_symlinks=False))
        except FileNotFoundError:
            return True
        if same:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        return True
    finally:
        os.close(guard)
