"""Where the container root's changes lie, and which kind of rootfs diff they make.

An overlay root (the usual engine setup) contributes its upperdir: exactly
the container's changes. A root that is a plain directory has no record of
changes, so all of it is archived (kind "full") and restore must lay it over
an empty root. Either way the root directory's own mode is recorded, because
restore has to recreate it: CRIU refuses a root whose mode differs
("File . has bad mode 040755 (expect 040555)").
"""

from __future__ import annotations

import os

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.record import Record
from runc_ckpt.rootfs import mountinfo

OVERLAY_DIFF = "overlay-diff"
FULL = "full"
NONE = "none"

# Paths (relative to the container root) podman leaves out of a rootfs diff:
# engine-managed mounts and files the engine writes itself.
SKIP = frozenset({"dev", "proc", "run", "sys", "etc/hosts", "etc/resolv.conf", "etc/mtab"})


class RootfsSource(Record):
    """Where the container root's changes are read from, found while the root is still mounted.

    Engines unmount a container's root as soon as its process ends (podman's
    cleanup, containerd's shim), and a checkpoint without --leave-running ends
    it; the overlay's upper and lower dirs stay on disk. So the mount is looked
    up before the dump and the diff is read from those dirs afterwards.
    """

    rootfs: str                    # the container root as runc reports it (the merged mount)
    root_mode: int                 # st_mode & 0o7777 of the container root
    overlay: mountinfo.OverlayDirs | None  # None: a plain directory, archived whole


def locate(rootfs: str, mountinfo_path: str = mountinfo.MOUNTINFO) -> RootfsSource:
    """Find the container root's upper/lower dirs (call before the container stops)."""
    try:
        root_mode = os.stat(rootfs).st_mode & 0o7777
    except OSError as e:
        raise RuncCkptError(f"container root {rootfs}: {e.strerror}") from None
    try:
        mount = mountinfo.find_mount(rootfs, mountinfo_path)
    except OSError as e:
        raise RuncCkptError(f"cannot read {mountinfo_path}: {e.strerror}") from None
    dirs = mountinfo.overlay_dirs(mount) if mount is not None else None
    if dirs is not None and not (os.path.isabs(dirs.upper) and os.path.isdir(dirs.upper)):
        dirs = None
    return RootfsSource(rootfs, root_mode, dirs)
