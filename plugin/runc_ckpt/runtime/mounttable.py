"""The mount points of /proc/self/mountinfo, and unmounting them: what a killed runc or CRIU leaves mounted.

runc restore bind-mounts the rootfs at `<root>/<id>/criu-root`, and CRIU
mounts a tmpfs with cgroup hierarchies at `<work>/.criu.cgyard.*`. Both are
normally unmounted before they exit; a kill of the process tree leaves them.
Removing a directory that holds such a mount goes through it (into the
container's rootfs, or the host's cgroups), so anything of ours that removes
or reuses these paths first asks here what is mounted below them.

This is deliberately small and stdlib-only (runtime/ sits below rootfs/, whose
mountinfo module reads overlay details): mount points only, unescaped.
"""

from __future__ import annotations

import os
import re

MOUNTINFO = "/proc/self/mountinfo"
MNT_DETACH = 2
_OCTAL = re.compile(r"\\([0-7]{3})")


def mount_points(mountinfo: str = MOUNTINFO) -> list[str]:
    """Every mount point, unescaped (\\040 -> space), in mountinfo's order (parents before children)."""
    points = []
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                fields = line.split(" ", 5)
                if len(fields) > 4:
                    points.append(_OCTAL.sub(lambda m: chr(int(m.group(1), 8)), fields[4]))
    except OSError:
        pass
    return points


def below(path: str, mountinfo: str = MOUNTINFO, include_self: bool = True,
          points: list[str] | None = None) -> list[str]:
    """Mount points at or under path (real path), deepest first: the order to unmount them in.

    points: mount_points() already read by the caller, which asks about several paths at once.
    """
    top = os.path.realpath(path)
    prefix = top.rstrip("/") + "/"
    found = {p for p in (mount_points(mountinfo) if points is None else points)
             if p.startswith(prefix) or (include_self and p == top)}
    return sorted(found, key=lambda p: (p.count("/"), p), reverse=True)


def unmount(path: str) -> str | None:
    """umount2(path, MNT_DETACH); None on success (or when it is not mounted any more), else why not."""
    # Imported here, not at the top: only a leftover's unmount needs libc, and every checkpoint and
    # restore --import imports this module (~2 ms; test_layering LAZY).
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(os.fsencode(path), MNT_DETACH) == 0:
        return None
    err = ctypes.get_errno()
    if err == 22 and path not in mount_points():   # EINVAL: not a mount point (gone meanwhile)
        return None
    return os.strerror(err)
