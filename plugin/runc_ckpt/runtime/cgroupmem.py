"""How much memory a container's cgroup holds that CRIU would dump: anonymous pages plus shmem.

Migration's pre-copy estimates the phase-0 pause from it before it freezes
anything (migrate.memory). The page cache of the container's files is not
dumped, so memory.usage_in_bytes would overstate it; memory.stat splits it:
cgroup v1 `total_rss` + `total_shmem` (the hierarchy's, as a container's
processes may sit in child cgroups), v2 `anon` + `shmem`. The cgroup is
the one the kernel says the container's init is in (of_pid): without a
cgroupsPath, runc makes it below the caller's own cgroup, not at /<id>.
"""

from __future__ import annotations

import os

from runc_ckpt.runtime import hostinfo

ROOT = "/sys/fs/cgroup"
_KEYS = {"v1": ("total_rss", "total_shmem"), "v2": ("anon", "shmem")}


def stat_path(cgroup: str, version: str) -> str:
    """memory.stat of a cgroup path (as runc's cgroupsPath, absolute in the hierarchy)."""
    rel = cgroup.lstrip("/")
    return os.path.join(ROOT, rel, "memory.stat") if version == "v2" else os.path.join(ROOT, "memory", rel,
                                                                                       "memory.stat")


def dumpable_bytes(cgroup: str, version: str | None = None) -> int | None:
    """Anonymous + shmem bytes of the cgroup; None when its memory.stat cannot be read."""
    version = version or hostinfo.cgroups_version()
    try:
        with open(stat_path(cgroup, version), encoding="ascii") as f:
            values = dict(line.split(maxsplit=1) for line in f if line.strip())
        return sum(int(values[k]) for k in _KEYS[version])
    except (OSError, ValueError, KeyError):
        return None


def of_pid(pid: int, version: str | None = None) -> str | None:
    """The memory cgroup (v1) or the cgroup (v2) that pid is in, per /proc/<pid>/cgroup; None if unreadable."""
    if pid <= 0:
        return None
    version = version or hostinfo.cgroups_version()
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2) if line.count(":") >= 2 else ("", "-", "")
        if (version == "v2" and controllers == "") or (version != "v2" and "memory" in controllers.split(",")):
            return path
    return None
