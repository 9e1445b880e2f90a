"""A tmpfs of this call's own, attached nowhere: where phase 0's passing memory dumps go.

Why: CRIU writes a dump fastest into a tmpfs mounted `huge=within_size`,
and phase 0's pause is that dump's frozen time. Measured on this project's
hosts (kernel 6.18, CRIU 4.2.1, a 1 GiB half-random idle workload, `runc
checkpoint --leave-running`, 6 interleaved dumps each): CRIU's frozen_time
0.42-0.53 s into such a tmpfs, against 0.64-0.97 s into /dev/shm (a new
default tmpfs: 0.65-0.79 s) and 0.57-1.08 s into ext4's page cache; of it,
CRIU's memwrite_time 0.22-0.25 s against 0.41-0.45 s in /dev/shm. (The
kernel then writes the files in large folios, where /dev/shm, whose THP
setting is "never", writes 4 KiB pages. `huge=always` was far slower:
3.5-4.3 s.)

How: the new mount API (fsopen, fsconfig, fsmount: Linux >= 5.2, with the
same syscall numbers on every architecture but alpha) makes a mount that
is attached to no mount namespace. No one else sees it and there is
nothing to unmount: its one reference is our fd, which runc (our child,
root) follows as /proc/<pid>/fd/<n>, and CRIU through the directory fd
runc hands it. When the call ends, however (a kill -9 of its whole tree
included), the kernel frees the mount and its pages with the last fd, so
unlike runtime/memscratch's /dev/shm dirs it leaves nothing for a later
call to sweep. That also means nothing in it outlives the call: it is for
dumps that only pass through, never for the container's only copy.

Its size is the kernel's default for a tmpfs, half of the RAM. Where the
kernel or our privileges refuse (no CAP_SYS_ADMIN over the mount
namespace, a seccomp filter, a kernel without THP or the new mount API),
mounted() yields None and the caller uses its other places.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator

_FSOPEN, _FSCONFIG, _FSMOUNT = 430, 431, 432
_FSOPEN_CLOEXEC = _FSMOUNT_CLOEXEC = 1
_FSCONFIG_SET_STRING, _FSCONFIG_CMD_CREATE = 1, 6
OPTIONS = (("huge", "within_size"), ("mode", "0700"))


def _call(libc: ctypes.CDLL, number: int, *args: object) -> int:
    """One raw syscall (the new mount API has no libc wrapper before glibc 2.36); its result, or OSError."""
    result = int(libc.syscall(ctypes.c_long(number), *args))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def _mount_fd() -> int:
    """A new tmpfs with OPTIONS, attached nowhere; the fd that holds it (close-on-exec)."""
    libc = ctypes.CDLL(None, use_errno=True)
    context = _call(libc, _FSOPEN, b"tmpfs", ctypes.c_uint(_FSOPEN_CLOEXEC))
    try:
        for key, value in OPTIONS:
            _call(libc, _FSCONFIG, context, ctypes.c_uint(_FSCONFIG_SET_STRING), key.encode(), value.encode(),
                  ctypes.c_int(0))
        _call(libc, _FSCONFIG, context, ctypes.c_uint(_FSCONFIG_CMD_CREATE), None, None, ctypes.c_int(0))
        return _call(libc, _FSMOUNT, context, ctypes.c_uint(_FSMOUNT_CLOEXEC), ctypes.c_uint(0))
    finally:
        os.close(context)


@contextlib.contextmanager
def mounted() -> Iterator[str | None]:
    """The private tmpfs's root as a path our children can follow, or None where it cannot be made;
    freed, with all it holds, when the block ends."""
    try:
        fd = _mount_fd()
    except OSError:
        yield None
        return
    try:
        yield f"/proc/{os.getpid()}/fd/{fd}"
    finally:
        os.close(fd)


def room(path: str) -> int | None:
    """Bytes still free in the tmpfs at path, None if unknown."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize
