"""The one atomic file write: temp file beside the target, fsync, rename, fsync of the directory.

Every file runc-ckpt writes for others to read (archives, config.json, the
lock holder records) goes through `writing()`: a reader, a crash or a
`kill -9` sees the old file (or none) or the complete new one, never a
part. The temp file is held with flock(LOCK_EX) while it is written, so the
next call can tell a dead writer's leftover (lock free: `sweep()` removes
it) from a live writer's (lock held: left alone).

durable=False skips the two fsyncs, for a record nobody reads after a
crash: the lock holder, read only while its flock is held, and no crash
outlives a flock. The rename still shows every reader while the host runs
the old file or the whole new one; it saves a tiny checkpoint 2 of its 6
fsyncs (1-12 ms each on a busy disk).

Temp names are `.<name>.runc-ckpt-<random>.tmp`; `check_name()` refuses a
target whose temp name would exceed the filesystem's name limit before
anything is touched.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
from collections.abc import Callable, Iterator

from runc_ckpt.runtime import safe_remove

TYPE_CHECKING = False  # typing's flag, without importing typing (base/record.py says why)
if TYPE_CHECKING:
    from typing import BinaryIO, TypeVar

    _T = TypeVar("_T")

PREFIX_TAIL = ".runc-ckpt-"
SUFFIX = ".tmp"
_RANDOM = 8           # random characters in a temp name (hex), as many as tempfile adds
_ATTEMPTS = 10000     # tempfile.TMP_MAX
NAME_MAX = 255


def temp_prefix(base: str) -> str:
    return f".{base}{PREFIX_TAIL}"


def temp_name_length(base: str) -> int:
    """Bytes of the longest temp name for a target called base."""
    return len(temp_prefix(base).encode()) + _RANDOM + len(SUFFIX)


def check_name(path: str) -> None:
    """Raise ValueError (with the reason) when path's temp name cannot exist in its directory."""
    directory, base = os.path.split(os.path.abspath(path))
    try:
        limit = os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = NAME_MAX
    if len(base.encode()) > limit:
        raise ValueError(f"file name is {len(base.encode())} bytes, longer than {limit}")
    if temp_name_length(base) > limit:
        raise ValueError(f"file name is {len(base.encode())} bytes; with runc-ckpt's temp name "
                         f"({temp_name_length(base)} bytes) it exceeds {limit}: "
                         f"use at most {limit - temp_name_length('')} bytes")


def fsync_dir(directory: str) -> None:
    fsync_path(directory, os.O_DIRECTORY)


def fsync_path(path: str, kind: int = os.O_NOFOLLOW) -> None:
    """fsync a file (never through a symlink) or, with kind=os.O_DIRECTORY, a directory."""
    fd = os.open(path, os.O_RDONLY | kind | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unique(directory: str, prefix: str, suffix: str, make: Callable[[str], _T]) -> tuple[_T, str]:
    """make(path) on a new random name in directory, as tempfile's mkstemp and mkdtemp do, without importing
    tempfile: its shutil/random chain is ~3 ms of every checkpoint's start-up (lock records are written
    before runc is forked)."""
    directory = os.path.abspath(directory)
    for _ in range(_ATTEMPTS):
        path = os.path.join(directory, f"{prefix}{os.urandom(_RANDOM // 2).hex()}{suffix}")
        try:
            return make(path), path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no unused temporary name in {directory}")


def new_file(directory: str, prefix: str, suffix: str = "") -> tuple[int, str]:
    """(fd, path) of a new 0600 file with a random name (tempfile.mkstemp's flags: never through a symlink)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    return _unique(directory, prefix, suffix, lambda path: os.open(path, flags, 0o600))


def new_dir(parent: str, prefix: str) -> str:
    """The path of a new 0700 directory with a random name (tempfile.mkdtemp)."""
    return _unique(parent, prefix, "", lambda path: os.mkdir(path, 0o700))[1]


def locked_temp(directory: str, base: str) -> tuple[int, str]:
    """A new 0600 temp file for base in directory, flock-ed; a sweep never takes it from us."""
    while True:
        fd, tmp = new_file(directory, temp_prefix(base), SUFFIX)
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink:   # a sweep may have removed it between its creation and flock
            return fd, tmp
        os.close(fd)


@contextlib.contextmanager
def writing(path: str, mode: int = 0o600,
            guard: Callable[[], contextlib.AbstractContextManager[object]] = contextlib.nullcontext,
            durable: bool = True) -> Iterator[BinaryIO]:
    """Yield an unbuffered file; when the block ends without error it becomes `path`.

    On any exception (or signal raised as one) the temp file is removed and
    `path` is as it was. `guard` wraps the commit (fsync, rename, fsync of
    the directory), e.g. signals.Deferral.critical, so that it is not cut.
    durable=False: no fsyncs (see the module's docstring for the one record that may).
    """
    directory, base = os.path.split(os.path.abspath(path))
    fd, tmp = locked_temp(directory, base)
    try:
        with open(fd, "wb", buffering=0) as f:
            yield f
            with guard():
                os.fchmod(f.fileno(), mode)
                if durable:
                    os.fsync(f.fileno())
                os.rename(tmp, path)
                tmp = ""
                if durable:
                    with contextlib.suppress(OSError):
                        fsync_dir(directory)
    finally:
        if tmp:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def write_bytes(path: str, data: bytes, mode: int = 0o644, durable: bool = True) -> None:
    with writing(path, mode, durable=durable) as f:
        view = memoryview(data)
        while view:
            view = view[f.write(view):]


def write_json(path: str, value: object, mode: int = 0o644, indent: int | None = 2, durable: bool = True) -> None:
    write_bytes(path, json.dumps(value, indent=indent).encode(), mode, durable)


def is_temp(name: str) -> bool:
    return name.startswith(".") and PREFIX_TAIL in name and name.endswith(SUFFIX)


def remove_unheld(path: str) -> bool:
    """Remove path (a file or a whole tree) if nobody holds its flock: a dead run's leftover.

    The lock is held while removing, so a writer that created the entry but
    has not locked it yet finds it gone (see locked_temp/locked_dir) instead
    of losing it later.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            safe_remove.remove_tree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        return not os.path.lexists(path)
    finally:
        os.close(fd)


def locked_dir(parent: str, prefix: str) -> tuple[int, str]:
    """A new 0700 directory in parent, flock-ed through an fd (kept open by the caller) for its lifetime."""
    while True:
        path = new_dir(parent, prefix)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False))
        except FileNotFoundError:
            same = False
        if same:
            return fd, path
        os.close(fd)


def sweep(directory: str, match: Callable[[str], bool] = is_temp) -> list[str]:
    """Remove the entries of directory whose name matches and whose flock no live run holds; returns them.

    Default: temp files of killed writers. Restore passes its staging-dir names.
    """
    removed: list[str] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        path = os.path.join(directory, name)
        if match(name) and not os.path.islink(path) and remove_unheld(path):
            removed.append(path)
    return removed
