"""Read the process table: who is alive, who runs runc for an ID, who holds a file, who sits in a cgroup.

runc-ckpt must tell its own dead runs from live ones after a kill of the
whole process tree, when nothing of ours is left to ask: a pid alone can be
reused, so a process is named by (pid, start time in clock ticks since boot,
field 22 of /proc/PID/stat). Survivors of a killed `runc restore` (a
half-restored `criu: restore --rpc` task in a session of its own) are found
by what they hold open or by the container's cgroup. Everything here only
reads /proc; it is called on the paths that repair, not on every call.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence


def starttime(pid: int) -> int | None:
    """The start time of pid (clock ticks after boot), or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    try:
        return int(data.rsplit(b")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def alive(pid: int, start: int | None) -> bool:
    """Whether the process that was pid at start still runs (not a zombie); start None: any process with pid."""
    now = starttime(pid)
    if now is None or (start is not None and now != start):
        return False
    return _state(pid) not in ("Z", "X", None)


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return None


def identity() -> tuple[int, int | None]:
    """This process as (pid, start time)."""
    return os.getpid(), starttime(os.getpid())


def pids() -> Iterator[int]:
    for name in os.listdir("/proc"):
        if name.isdigit():
            yield int(name)


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [os.fsdecode(a) for a in f.read().split(b"\0")[:-1]]
    except OSError:
        return []


def ancestors(pid: int) -> set[int]:
    """pid and every parent up to init: never waited for nor killed (a `timeout runc-ckpt ...` names our ID)."""
    seen = set()
    while pid > 0 and pid not in seen:
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                pid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return seen


def runc_working_on(root: str, cid: str) -> list[int]:
    """Live runc processes (not runc-ckpt, not our ancestors) whose argv names cid under root.

    A runc whose runc-ckpt was killed alone (an OOM kill) goes on; the next
    call must wait for it instead of repairing under its feet.
    """
    mine = ancestors(os.getpid())
    want_root = os.path.realpath(root)
    found = []
    for pid in pids():
        if pid in mine:
            continue
        argv = cmdline(pid)
        if cid not in argv[1:] or not any(_is_runc(a) for a in argv[:2]):
            continue
        if _root_of(argv) == want_root and alive(pid, None):
            found.append(pid)
    return found


def _is_runc(arg: str) -> bool:
    base = os.path.basename(arg)
    return "runc" in base and "runc-ckpt" not in base


def _root_of(argv: list[str]) -> str:
    for i, a in enumerate(argv):
        for flag in ("--root", "-root"):
            if a == flag and i + 1 < len(argv):
                return os.path.realpath(argv[i + 1])
            if a.startswith(flag + "="):
                return os.path.realpath(a.split("=", 1)[1])
    return os.path.realpath("/run/runc")


def holding(paths: Sequence[str]) -> list[int]:
    """Processes (not us) with an fd, cwd or root at or below one of paths."""
    prefixes = [os.path.realpath(p).rstrip("/") for p in paths]
    me = os.getpid()
    found = []
    for pid in pids():
        if pid == me:
            continue
        links = [f"/proc/{pid}/cwd", f"/proc/{pid}/root"]
        try:
            links += [f"/proc/{pid}/fd/{n}" for n in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        for link in links:
            try:
                target = os.readlink(link)
            except OSError:
                continue
            if any(target == p or target.startswith(p + "/") for p in prefixes):
                found.append(pid)
                break
    return found


def in_cgroup(path: str) -> list[int]:
    """Processes whose cgroup (any v1 hierarchy, or v2) is path, e.g. "/web"."""
    found = []
    for pid in pids():
        try:
            with open(f"/proc/{pid}/cgroup", encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        if any(line.split(":", 2)[-1] == path for line in lines if line.count(":") >= 2):
            found.append(pid)
    return found


def same_root(pid: int, rootfs: str) -> bool:
    """Whether pid's root directory is rootfs (the same inode: a bind mount of it, as criu-root is, counts)."""
    try:
        a, b = os.stat(f"/proc/{pid}/root"), os.stat(rootfs)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
