"""The files and directories of a big tree, made by a forked helper process while this one parses.

A tree of many small files costs, per file, Python work to parse its header
and check its name (about half), and four syscalls: create, write, utime,
close (the other half). One process does them one after the other on one
core, where `zstd -dc | tar -x` uses two. A helper thread does not help:
every syscall gives up the GIL and must win it back from the parser (a
measured write-behind thread saved nothing). A forked process has its own
interpreter, so parsing (here) and making (there) overlap.

The helper is a fork of the extracting process, made inside
safeextract.extract() (umask 0, the staging Root and its cached directory fds
inherited), and makes entries with the same code paths and checks: each
directory is walked from the staging fd with O_NOFOLLOW (Root.dir), a file is
created O_EXCL|O_NOFOLLOW, and a name taken by an earlier member gives way
exactly as in extract(). Each op carries its member's index; a path a file
replaced is reported back with that index, so the parent drops that path's
directory metadata only if it was recorded earlier, and its cached fds.
The parent sends regular files whose data it holds (no xattrs) and
directories; everything else it does itself after barrier(), which waits until
the helper has done all it was sent, and then it tells the helper to forget()
that path's cached fds. So every change still happens in archive order.

The helper's first error (an UnsafeArchive or another RuncCkptError raised
by Root, an OSError) comes back at the next barrier and is raised in the
parent, whose caller removes the staging dir as always. The helper blocks
SIGINT/SIGTERM/SIGHUP (the parent decides) and exits at the end of its input,
when the parent closes the pipe or dies. The extracting process has threads
(reader.ReadAhead, HashPipe); the helper touches none of their locks, only
os calls and objects of its own.

Measured on the busy 2-core machine (reader.stage of 50k x 1 KiB on tmpfs):
0.66-0.72 s wall against 0.91-0.96 s in-process, and 2.8 s against 3.75 s
for 200k. The CPU time grows by ~3.6 us a file (ops packed, piped and
unpacked), which is why a process that may run on one CPU forks no helper.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import stat
import struct
import sys
from collections.abc import Callable
from typing import Protocol

from runc_ckpt.base.errors import RuncCkptError

# kind, member index, path length, length of the path's directory part, mode, uid, gid, mtime, data length
_OP = struct.Struct("<BQIIIIIdQ")
_FILE, _DIR, _FORGET, _BARRIER = 1, 2, 3, 4
_REPLY = struct.Struct("<IBiI")          # replaced paths, error kind, errno, error text length
_REPLACED = struct.Struct("<QI")        # member index, path length
_NO_ERROR, _UNSAFE, _OSERROR, _OTHER = 0, 1, 2, 3
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
BATCH_BYTES = 256 << 10       # what the parent gathers before one write to the pipe
PIPE_SIZE = 1 << 20           # the helper may lag the parser by this much
_F_SETPIPE_SZ = 1031          # fcntl.F_SETPIPE_SZ (Python 3.10+ names it on Linux; typeshed does not)
_BLOCKED = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
# What the op's fields hold; a member outside them (a negative base-256 owner, a mtime past 2242)
# is made in-process, where it fails or succeeds as it always did.
MAX_ID = (1 << 32) - 1
MAX_MTIME = 1 << 33

Parts = tuple[str, ...]


class Tree(Protocol):
    """What the helper asks of safeextract.Root."""

    OWNER: tuple[int, int]

    def dir(self, parts: Parts, create: bool = False, mode: int = 0o755) -> int | None: ...

    def trim(self) -> None: ...

    def lstat(self, parts: Parts) -> os.stat_result | None: ...

    def remove(self, parts: Parts) -> None: ...

    def forget(self, parts: Parts) -> None: ...

    def creates_ours(self, parts: Parts, fd: int) -> bool: ...


class FileMaker:
    """The parent's end: add_file()/add_dir(), barrier() and forget() around anything else, close() at the end."""

    def __init__(self, root: Tree, unsafe: type[RuncCkptError]) -> None:
        """Fork the helper; OSError (no process or fd to be had) leaves nothing behind."""
        self._unsafe = unsafe
        ops_r, self._ops = os.pipe()
        self._replies, replies_w = os.pipe()
        try:
            fcntl.fcntl(self._ops, _F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass    # a smaller pipe (a lowered pipe-max-size) only overlaps less
        try:
            pid = os.fork()
        except OSError:
            for fd in (ops_r, self._ops, self._replies, replies_w):
                os.close(fd)
            raise
        if pid == 0:     # the helper: never returns
            code = 1
            try:
                signal.pthread_sigmask(signal.SIG_BLOCK, _BLOCKED)
                os.close(self._ops)
                os.close(self._replies)
                _serve(root, unsafe, ops_r, replies_w)
                code = 0
            finally:
                os._exit(code)
        os.close(ops_r)
        os.close(replies_w)
        self.pid = pid
        self._pending: list[bytes | memoryview] = []
        self._pending_bytes = 0

    def add_file(self, index: int, parts: Parts, mode: int, uid: int, gid: int, mtime: float,
                 data: bytes | memoryview) -> None:
        """Member `index`, a regular file at parts (its directories made if missing)."""
        self._add(_FILE, index, parts, mode, uid, gid, mtime, data)

    def add_dir(self, index: int, parts: Parts) -> None:
        """Member `index`, a directory at parts (mode 0700 until the parent applies its metadata)."""
        self._add(_DIR, index, parts, 0, 0, 0, 0.0, b"")

    def forget(self, parts: Parts) -> None:
        """The parent changed what is at parts: the helper drops its cached fds there."""
        self._add(_FORGET, 0, parts, 0, 0, 0, 0.0, b"")

    def _add(self, kind: int, index: int, parts: Parts, mode: int, uid: int, gid: int, mtime: float,
             data: bytes | memoryview) -> None:
        path = "/".join(parts).encode(_FS_ENCODING, _FS_ERRORS)     # os.fsencode, once per file
        self._pending += (_OP.pack(kind, index, len(path), max(path.rfind(b"/"), 0), mode, uid, gid, mtime,
                                   len(data)), path, data)
        self._pending_bytes += len(data) + 64
        if self._pending_bytes >= BATCH_BYTES:
            self._send()

    def _send(self) -> None:
        data = memoryview(b"".join(self._pending))
        self._pending = []
        self._pending_bytes = 0
        try:
            while data:
                data = data[os.write(self._ops, data):]
        except BrokenPipeError:
            raise OSError(errno.EPIPE, "the extraction's file-making helper has died") from None

    def barrier(self, replaced: Callable[[int, Parts], None]) -> None:
        """Wait until the helper has done all it was sent; replaced(index, parts) for each path a file replaced."""
        self._pending.append(_OP.pack(_BARRIER, 0, 0, 0, 0, 0, 0, 0.0, 0))
        self._send()
        head = _read_exact(self._replies, _REPLY.size)
        if len(head) < _REPLY.size:
            raise OSError(errno.EPIPE, "the extraction's file-making helper has died")
        count, kind, err, text_len = _REPLY.unpack(head)
        for _ in range(count):
            index, length = _REPLACED.unpack(_read_exact(self._replies, _REPLACED.size))
            path = os.fsdecode(_read_exact(self._replies, length))
            replaced(index, tuple(path.split("/")))
        text = os.fsdecode(_read_exact(self._replies, text_len))
        if kind == _UNSAFE:
            raise self._unsafe(text)
        if kind == _OSERROR:
            raise OSError(err, os.strerror(err), text or None)
        if kind == _OTHER:
            raise RuncCkptError(text)

    def close(self) -> None:
        """Stop the helper (it exits at the end of its input) and reap it."""
        if self._ops >= 0:
            os.close(self._ops)
            os.close(self._replies)
            self._ops = -1
            os.waitpid(self.pid, 0)


def _read_exact(fd: int, n: int) -> bytes:
    parts = []
    while n > 0:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            break
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def _serve(root: Tree, unsafe: type[RuncCkptError], ops: int, replies: int) -> None:
    """The helper's loop: do each op; at a barrier, answer what files replaced and the first error."""
    source = os.fdopen(ops, "rb", buffering=PIPE_SIZE)
    read, unpack, size = source.read, _OP.unpack, _OP.size
    replaced: list[bytes] = []
    error = (_NO_ERROR, 0, b"")
    last_dir = b""               # a tree's files come directory by directory: decode each directory once
    dir_parts: Parts = ()
    while True:
        head = read(size)
        if len(head) < size:
            return
        kind, index, plen, dlen, mode, uid, gid, mtime, dsize = unpack(head)
        if kind == _BARRIER:
            os.write(replies, _REPLY.pack(len(replaced), error[0], error[1], len(error[2])) + b"".join(replaced)
                     + error[2])
            replaced = []
            if error[0] != _NO_ERROR:
                return
            continue
        body = read(plen + dsize)
        if error[0] != _NO_ERROR:
            continue
        try:
            if body[:dlen] != last_dir:
                last_dir = body[:dlen]
                dir_parts = tuple(os.fsdecode(last_dir).split("/")) if dlen else ()
            parts = (*dir_parts, os.fsdecode(body[dlen + 1 if dlen else 0:plen]))
            root.trim()
            if kind == _FILE:
                if _make_file(root, parts, mode, uid, gid, mtime, memoryview(body)[plen:]):
                    path = os.fsencode("/".join(parts))
                    replaced.append(_REPLACED.pack(index, len(path)) + path)
            elif kind == _DIR:
                make_dir(root, parts)
            else:
                root.forget(parts)
        except RuncCkptError as e:
            error = (_UNSAFE if isinstance(e, unsafe) else _OTHER, 0, os.fsencode(str(e)))
        except OSError as e:
            error = (_OSERROR, e.errno or errno.EIO, os.fsencode(str(e.filename or "")))
        except Exception as e:  # noqa: BLE001  # any other failure is reported, not lost
            error = (_OTHER, 0, os.fsencode(f"internal error while extracting: {e!r}"))


def make_dir(root: Tree, parts: Parts) -> None:
    """A directory member at parts (not the root): mode 0700 now, its metadata after its children.

    Create first, look only on EEXIST; an earlier non-directory gives way."""
    parent = root.dir(parts[:-1], create=True)
    assert parent is not None
    name = parts[-1]
    try:
        os.mkdir(name, 0o700, dir_fd=parent)
    except FileExistsError:
        existing = root.lstat(parts)
        if existing is not None and not stat.S_ISDIR(existing.st_mode):
            root.remove(parts)
            os.mkdir(name, 0o700, dir_fd=parent)


def create_file(root: Tree, parent: int, parts: Parts, mode: int) -> tuple[int, bool]:
    """A new regular file at parts (parent: its directory's fd), with its permission bits (umask 0);
    and whether an earlier entry of that name gave way.

    Create first and look only on EEXIST: staging starts empty, so a name the
    archive repeats is rare, and a stat per member was a tenth of the time of a
    many-file tree. The outcome is the same as looking first."""
    try:
        return os.open(parts[-1], _CREATE, mode & 0o777, dir_fd=parent), False
    except FileExistsError:
        root.remove(parts)
        return os.open(parts[-1], _CREATE, mode & 0o777, dir_fd=parent), True


def set_owner_mode(root: Tree, fd: int, dir_parts: Parts, parent: int, mode: int, uid: int, gid: int) -> None:
    """A new file's owner (only where creating did not already give it) and its setuid/setgid/sticky bits."""
    if (uid, gid) != root.OWNER or not root.creates_ours(dir_parts, parent):
        os.fchown(fd, uid, gid)
    if mode & 0o7000:
        os.fchmod(fd, mode)  # after chown, which clears setuid bits; else O_CREAT set the mode


def _make_file(root: Tree, parts: Parts, mode: int, uid: int, gid: int, mtime: float, data: memoryview) -> bool:
    """A new regular file with its data, owner, mode and mtime; True if it replaced an earlier entry."""
    parent = root.dir(parts[:-1], create=True)
    assert parent is not None
    fd, replaced = create_file(root, parent, parts, mode)
    try:
        while data:
            data = data[os.write(fd, data):]
        set_owner_mode(root, fd, parts[:-1], parent, mode, uid, gid)
        os.utime(fd, (mtime, mtime))
    finally:
        os.close(fd)
    return replaced
