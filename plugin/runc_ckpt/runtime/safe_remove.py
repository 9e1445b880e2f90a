"""The one recursive removal runc-ckpt uses: it never goes through a mount.

A killed `runc restore` leaves the rootfs bind-mounted at `<root>/<id>/criu-root`,
and a killed CRIU leaves its cgroup yard (a tmpfs holding the host's cgroup
hierarchies) mounted in its work dir. shutil.rmtree does not stop at a mount:
through the first it empties the container's rootfs, through the second it
tries to remove the host's cgroups. So every tree removal of ours (restore
work dirs, import and staging dirs, stranded dumps, undo data) comes here:
whatever is mounted at or below the path is unmounted first, deepest first
with MNT_DETACH; if one cannot be unmounted the tree is left alone and the
caller learns why (RemoveRefused, or False with ignore_errors).
"""

from __future__ import annotations

import os

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.runtime import mounttable


class RemoveRefused(RuncCkptError):
    """A mount below the path could not be unmounted: nothing was removed."""


def unmount_below(path: str) -> list[str]:
    """Unmount everything mounted at or below path, deepest first; returns what was unmounted.

    Raises RemoveRefused naming the first mount that stays, with the command that clears it.
    """
    done = []
    for point in mounttable.below(path):
        why = mounttable.unmount(point)
        if why is not None:
            raise RemoveRefused(f"{point} is mounted and cannot be unmounted ({why}); nothing below {path} was "
                                f"removed: clear it with `umount -l {point}`")
        done.append(point)
    left = mounttable.below(path)
    if left:
        raise RemoveRefused(f"{left[0]} is still mounted; nothing below {path} was removed: clear it with "
                            f"`umount -l {left[0]}`")
    return done


def remove_tree(path: str, ignore_errors: bool = False, dir_fd: int | None = None) -> bool:
    """Remove the tree at path (relative to dir_fd if given), never through a mount.

    Returns whether path is gone. ignore_errors: as shutil.rmtree's, and a
    refusal (a mount that stays) is also just False instead of RemoveRefused.
    """
    try:
        os.lstat(path, dir_fd=dir_fd)
    except FileNotFoundError:
        return True     # nothing there, not even a mount point: no mount table to read (a checkpoint clears
                        # its image dir's name before every dump, ~2 ms for what is almost never there)
    # Imported here, not at the top: a checkpoint loads this module before runc is forked; shutil (~2 ms) loads
    # when a tree is removed.
    import shutil
    where = os.path.join(f"/proc/self/fd/{dir_fd}", path) if dir_fd is not None else path
    try:
        unmount_below(os.path.realpath(where) if dir_fd is not None else where)
    except RemoveRefused:
        if ignore_errors:
            return False
        raise
    if dir_fd is not None:
        shutil.rmtree(path, ignore_errors=ignore_errors, dir_fd=dir_fd)
        try:
            os.lstat(path, dir_fd=dir_fd)
        except FileNotFoundError:
            return True
        return False
    shutil.rmtree(path, ignore_errors=ignore_errors)
    return not os.path.lexists(path)
