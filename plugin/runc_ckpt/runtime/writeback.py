"""How much more the page cache may dirty before the kernel starts background writeback.

Measured on this project's hosts (kernel 6.18, ext4, one dump at a time on a
busy shared host): CRIU writes a `--leave-running` dump of 512 MiB of pages
faster into an ext4 file's page cache than into tmpfs, frozen 0.29-0.44 s
against 0.39-0.50 s in /dev/shm (likely as ext4 caches in large folios and
tmpfs, with THP off for shmem, in 4 KiB pages). A file deleted a few seconds
later never reaches the disk. That holds only while the kernel leaves the
dirty pages alone: with writeback running the same kind of dump of 1 GiB
took 2.1 s (the limit's, on a clean disk, 0.5 s). So a passing dump may go
to disk only while the dirty pages, with it, stay under the background
threshold (mm/page-writeback.c, domain_dirty_limits: dirty_background_bytes,
else dirty_background_ratio of the dirtyable memory, free + file LRU pages;
half the dirty limit if not below it). Global figures only: a cgroup v2
writeback domain may be smaller, which the caller's margin covers.
"""

from __future__ import annotations

import os

PAGE = 4096


def _read_int(path: str) -> int:
    with open(path, encoding="ascii") as f:
        return int(f.read().strip() or 0)


def _meminfo(proc: str) -> dict[str, int]:
    """/proc/meminfo's figures in bytes."""
    out: dict[str, int] = {}
    with open(os.path.join(proc, "meminfo"), encoding="ascii") as f:
        for line in f:
            name, _, rest = line.partition(":")
            fields = rest.split()
            if fields and fields[0].isdigit():
                out[name] = int(fields[0]) * (1024 if fields[1:] == ["kB"] else 1)
    return out


def _limit(proc: str, name: str, dirtyable: int) -> int:
    """vm.<name>_bytes if set, else vm.<name>_ratio percent of the dirtyable memory."""
    vm = os.path.join(proc, "sys", "vm")
    given = _read_int(os.path.join(vm, f"{name}_bytes"))
    return given if given else _read_int(os.path.join(vm, f"{name}_ratio")) * dirtyable // 100


def headroom(proc: str = "/proc") -> int | None:
    """Bytes that may still be dirtied before background writeback starts; None if the figures are unreadable."""
    try:
        info = _meminfo(proc)
        dirtyable = info["MemFree"] + info["Active(file)"] + info["Inactive(file)"]
        background = _limit(proc, "dirty_background", dirtyable)
        limit = _limit(proc, "dirty", dirtyable)
        if background >= limit:
            background = limit // 2
        return max(background - info["Dirty"] - info["Writeback"], 0)
    except (OSError, ValueError, KeyError):
        return None
