"""Safe extraction of untrusted tar streams into a root, and the rename-merge that applies them.

An archive is untrusted: nothing it names may create, change or delete
anything outside the directory it is meant for. Every path is therefore
walked one component at a time from a directory fd with O_NOFOLLOW, and every
change is made relative to a directory fd (mkdir/symlink/link/rename/unlink
with dir_fd, fchown/fchmod/fsetxattr on an fd opened O_NOFOLLOW). A symlink
or non-directory met where a directory is needed is refused, whether the
archive planted it earlier or it already was in the target.

Two phases keep a refusal from leaving anything half-applied:
  1. extract(): the tar is written into a fresh staging directory created
     inside the target (same filesystem, so no file data is written twice).
     Refusal or error: the staging directory is removed, the target untouched.
  2. plan_merge() checks the staged tree against the target (and deletions
     against the target) without changing anything; the journaled merge
     (state/journaledmerge.apply_merge) then rename()s the staged entries into
     place with move(), copying only on EXDEV.

Headers are parsed by archive/tarstream (our own parser); tarfile's extraction
filters (PEP 706) strip the owners and setuid bits a rootfs needs.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import stat
import tarfile
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Self

from runc_ckpt.archive.filemaker import MAX_ID, MAX_MTIME, FileMaker, create_file, make_dir, set_owner_mode
from runc_ckpt.archive.tarstream import Source, TarStream
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.record import Record
from runc_ckpt.runtime import safe_remove

O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
COPY_CHUNK = 1 << 20
# xattr namespaces a container rootfs legitimately carries (file caps, ACLs, user data).
XATTR_PREFIXES = ("user.", "security.", "trusted.", "system.posix_acl_")
PAX_XATTR = "SCHILY.xattr."
# Deeper trees than any rootfs has; it also keeps the (recursive) rmtree and
# copy of a staged tree within Python's recursion limit.
MAX_DEPTH = 256


class UnsafeArchive(RuncCkptError):
    """The archive asks for something outside its root, or for a forbidden file type."""


def split_name(name: str, what: str, allow_absolute: bool = False) -> tuple[str, ...]:
    """The components of a member name; refuse absolute names and `..` anywhere.

    `./` prefixes and `.` components are dropped (tar writes them). With
    allow_absolute (deleted.files holds container paths like /etc/x), a
    leading `/` is accepted and means the root.
    """
    if "\x00" in name:
        raise UnsafeArchive(f"{what}: member name contains a NUL byte")
    if name.startswith("/") and not allow_absolute:
        raise UnsafeArchive(f"{what}: absolute member name {name!r} refused")
    parts = tuple(name.split("/"))
    if "" in parts or "." in parts:       # `./` prefixes, `//`, a trailing `/`: tested first, built only then
        parts = tuple(p for p in parts if p not in ("", "."))
    if ".." in parts:
        raise UnsafeArchive(f"{what}: member name {name!r} contains '..'")
    if len(parts) > MAX_DEPTH:
        raise UnsafeArchive(f"{what}: member name {name[:80]!r}... is nested {len(parts)} deep "
                            f"(at most {MAX_DEPTH})")
    return parts


def _display(parts: tuple[str, ...]) -> str:
    return "/".join(parts) or "."


class Root:
    """A directory we create entries in; every lookup stays inside it.

    Directory fds are cached by path; any change that may replace a
    directory drops the cache for that path and below. trim() closes the
    least recently used ones, so that a diff with many directories stays far
    below RLIMIT_NOFILE; callers call it only between operations, never while
    they hold an fd from dir().

    creates_ours() says, per cached directory, whether a file created in it
    is ours (our uid, and our gid: the directory's group is ours, so neither
    its setgid bit nor a grpid mount gives the file another group); then a
    member owned by us needs no fchown, a syscall in five of a small file's.
    """

    MAX_CACHED = 128
    OWNER = (os.geteuid(), os.getegid())     # a new file's owner and (see creates_ours) group

    def __init__(self, path: str, what: str, dir_fd: int | None = None) -> None:
        self.path = path
        self.what = what
        try:
            self.fd = os.open(path, O_DIR, dir_fd=dir_fd)
        except OSError as e:
            raise RuncCkptError(f"{what}: cannot open {path}: {e.strerror}") from None
        self._dirs: OrderedDict[tuple[str, ...], int] = OrderedDict()
        self._ours: dict[tuple[str, ...], bool] = {}     # creates_ours() of cached dirs (and of the root)

    @classmethod
    def at(cls, parent: Root, name: str, what: str) -> Root:
        """The directory `name` directly inside parent, opened without following a link."""
        root = cls(name, what, dir_fd=parent.fd)
        root.path = os.path.join(parent.path, name)
        return root

    def close(self) -> None:
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()
        self._ours.clear()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def forget(self, parts: tuple[str, ...]) -> None:
        """Drop cached fds at and below parts (they may name a replaced directory)."""
        n = len(parts)
        for key in [k for k in self._dirs if k[:n] == parts]:
            os.close(self._dirs.pop(key))
        for key in [k for k in self._ours if k[:n] == parts]:
            del self._ours[key]

    def creates_ours(self, parts: tuple[str, ...], fd: int) -> bool:
        """Whether a file created now in the directory at parts (open as fd, from dir()) is owned by OWNER.

        A new file's group is the creator's, or with a setgid directory or a
        grpid mount the directory's: the same when the directory's group is
        ours. Asked once per cached directory; apply_dir_meta's chown drops it.
        """
        ours = self._ours.get(parts)
        if ours is None:
            ours = self._ours[parts] = os.fstat(fd).st_gid == self.OWNER[1]
        return ours

    def forget_group(self, parts: tuple[str, ...]) -> None:
        """The directory at parts changes owner (or setgid bit): creates_ours() asks again."""
        self._ours.pop(parts, None)

    def dir(self, parts: tuple[str, ...], create: bool = False, mode: int = 0o755) -> int | None:
        """An fd of the directory at parts, or None if missing (and not create).

        Refuses a symlink or non-directory on the way: the archive may not
        reach through one, wherever it came from.
        """
        if not parts:
            return self.fd
        fd = self._dirs.get(parts)
        if fd is not None:
            self._dirs.move_to_end(parts)
            return fd
        parent = self.dir(parts[:-1], create, mode)
        if parent is None:
            return None
        name = parts[-1]
        try:
            fd = os.open(name, O_DIR, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                return None
            try:
                os.mkdir(name, mode, dir_fd=parent)
            except FileExistsError:
                pass
            fd = os.open(name, O_DIR, dir_fd=parent)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafeArchive(f"{self.what}: path {_display(parts)!r} goes through a symlink or "
                                    f"non-directory") from None
            raise
        self._dirs[parts] = fd
        return fd

    def trim(self) -> None:
        """Close cached fds beyond MAX_CACHED, least recently used first."""
        while len(self._dirs) > self.MAX_CACHED:
            parts, fd = self._dirs.popitem(last=False)
            os.close(fd)
            self._ours.pop(parts, None)

    def lstat(self, parts: tuple[str, ...]) -> os.stat_result | None:
        """lstat of the entry at parts (None if it or a parent is missing)."""
        if not parts:
            return os.fstat(self.fd)
        parent = self.dir(parts[:-1])
        if parent is None:
            return None
        try:
            return os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def remove(self, parts: tuple[str, ...]) -> None:
        """Remove the entry at parts, a whole tree if it is a directory; links are not followed."""
        parent = self.dir(parts[:-1])
        if parent is None:
            return
        st = self.lstat(parts)
        if st is None:
            return
        self.forget(parts)
        if stat.S_ISDIR(st.st_mode):
            safe_remove.remove_tree(parts[-1], dir_fd=parent)
        else:
            os.unlink(parts[-1], dir_fd=parent)


class DirMeta(Record):
    """Metadata of an explicit directory member, applied after its children are in place."""

    parts: tuple[str, ...]
    mode: int
    uid: int
    gid: int
    mtime: float
    xattrs: dict[str, bytes]


class Extracted:
    """What extract() staged: the explicit directories (for the merge) and counts (added to as it goes)."""

    __slots__ = ("bytes", "explicit_dirs", "members", "xattrs_skipped")

    def __init__(self) -> None:
        self.explicit_dirs: dict[tuple[str, ...], DirMeta] = {}
        self.members = 0
        self.bytes = 0
        self.xattrs_skipped = 0


def _xattrs(member: tarfile.TarInfo) -> dict[str, bytes]:
    out = {}
    for key, value in member.pax_headers.items():
        if key.startswith(PAX_XATTR):
            out[key[len(PAX_XATTR):]] = value.encode("utf-8", "surrogateescape")
    return out


def _set_xattrs(fd: int, xattrs: dict[str, bytes], result: Extracted) -> None:
    for name, value in xattrs.items():
        if not name.startswith(XATTR_PREFIXES):
            result.xattrs_skipped += 1
            continue
        try:
            os.setxattr(fd, name, value)
        except OSError as e:
            if e.errno not in (errno.ENOTSUP, errno.EPERM, errno.EOPNOTSUPP):
                raise
            result.xattrs_skipped += 1


def copy_data(src: Source, fd: int, size: int, what: str) -> None:
    """Copy exactly size bytes from a source's read_view() to fd; short data is a truncated archive."""
    left = size
    while left > 0:
        view = src.read_view(min(left, COPY_CHUNK))
        if not view:
            raise RuncCkptError(f"{what}: archive is truncated")
        left -= len(view)
        while view:
            view = view[os.write(fd, view):]


# Regular files (of at most HELPER_MAX bytes, in one extract() call) made in-process before the
# rest of the tree goes to a forked helper (archive.filemaker): fork, pipes and reaping took 1.3-1.5 ms
# here (more in a bigger process), what ~100 files cost; a small tree never forks.
FORK_AFTER = 256
HELPER_MAX = 1 << 20        # bigger files are written here, after a barrier


def extract(tar: TarStream, root: Root, what: str, allow_devices: bool,
            result: Extracted | None = None) -> Extracted:
    """Write every member of a streaming tar into root, refusing anything unsafe.

    Owners, modes (setuid included), symlinks, hardlinks, mtimes and PAX
    xattrs are kept. Hardlinks may only point at members already extracted
    into this root. Device nodes are refused unless allow_devices. Past
    FORK_AFTER small files, a helper process makes files and directories
    while this one parses (archive.filemaker); all else waits for it.
    """
    result = result or Extracted()
    old_umask = os.umask(0)
    maker: FileMaker | None = None
    # On one CPU the helper could only take turns with the parser: its ops would cost without overlapping.
    small, fork_at = 0, float(FORK_AFTER) if len(os.sched_getaffinity(0)) > 1 else math.inf
    explicit_at: dict[tuple[str, ...], int] = {}     # with a helper: the member index of each DirMeta

    def replaced(index: int, parts: tuple[str, ...]) -> None:
        # The helper's file `index` took the place of what was at parts: as _replace() does in-process,
        # forget its fds and drop its directory metadata if that was recorded earlier (before the fork: no index).
        root.forget(parts)
        if explicit_at.get(parts, -1) < index:
            result.explicit_dirs.pop(parts, None)

    try:
        for index, member in enumerate(tar):
            if maker is None and small >= fork_at:
                try:
                    maker = FileMaker(root, UnsafeArchive)
                except OSError:
                    fork_at = math.inf      # no process or fd to spare: the rest in-process, as before
            if maker is not None:
                if _hand_over(tar, member, maker, index, what, result, explicit_at):
                    continue
                maker.barrier(replaced)
            root.trim()
            _extract_one(tar, member, root, what, allow_devices, result)
            result.members += 1
            if maker is not None:
                parts = split_name(member.name, what)
                if parts:
                    maker.forget(parts)      # what the helper has cached there may be gone
            elif member.type in _REGULAR and member.size <= HELPER_MAX:
                small += 1
        if maker is not None:
            maker.barrier(replaced)
        for meta in sorted(result.explicit_dirs.values(), key=lambda m: -len(m.parts)):
            root.trim()
            apply_dir_meta(root, meta, result)
    finally:
        if maker is not None:
            maker.close()
        os.umask(old_umask)
    return result


def _hand_over(tar: TarStream, m: tarfile.TarInfo, maker: FileMaker, index: int, what: str, result: Extracted,
               explicit_at: dict[tuple[str, ...], int]) -> bool:
    """Send a small regular file or a directory to the helper; False: extract() must do it itself."""
    if m.type in _REGULAR:
        size = m.size
        if size > HELPER_MAX or (m.pax_headers and _xattrs(m)) or not _fits(m):
            return False
        parts = split_name(m.name, what)
        if not parts:
            return False
        data: bytes | memoryview = tar.read_view(size)
        if len(data) < size:        # the file spans two pieces of the read-ahead
            data = bytes(data) + tar.read(size - len(data))
            if len(data) < size:
                raise RuncCkptError(f"{what}: {m.name!r}: archive is truncated")
        maker.add_file(index, parts, m.mode & 0o7777, m.uid, m.gid, m.mtime, data)
        result.bytes += size
    elif m.type == tarfile.DIRTYPE:
        parts = split_name(m.name, what)
        if not parts:
            return False
        maker.add_dir(index, parts)
        result.explicit_dirs[parts] = DirMeta(parts, m.mode & 0o7777, m.uid, m.gid, m.mtime, _xattrs(m))
        explicit_at[parts] = index
    else:
        return False
    result.members += 1
    return True


def _fits(m: tarfile.TarInfo) -> bool:
    """Whether the owner and mtime fit filemaker's op (any real tree's do)."""
    return 0 <= m.uid <= MAX_ID and 0 <= m.gid <= MAX_ID and 0 <= m.mtime < MAX_MTIME


def _extract_one(tar: TarStream, m: tarfile.TarInfo, root: Root, what: str, allow_devices: bool,
                 result: Extracted) -> None:
    parts = split_name(m.name, what)
    if m.type in _REGULAR and parts and not m.issparse():
        _extract_regular(tar, m, root, parts, what, result)
        return
    label = f"{what}: {m.name!r}"
    if m.type not in _EXTRACT_TYPES or m.issparse():
        raise UnsafeArchive(f"{label}: unsupported member type {m.type!r}")
    if m.isdev() and not allow_devices:
        raise UnsafeArchive(f"{label}: device node refused")
    if not parts:
        if not m.isdir():
            raise UnsafeArchive(f"{label}: the root may only be a directory")
        result.explicit_dirs[()] = DirMeta((), m.mode & 0o7777, m.uid, m.gid, m.mtime, _xattrs(m))
        return
    if m.isdir():
        make_dir(root, parts)
        result.explicit_dirs[parts] = DirMeta(parts, m.mode & 0o7777, m.uid, m.gid, m.mtime, _xattrs(m))
        return
    parent = root.dir(parts[:-1], create=True)
    assert parent is not None
    name = parts[-1]
    try:
        _make_node(m, label, root, name, parent)
    except FileExistsError:
        _replace(root, parts, result)
        _make_node(m, label, root, name, parent)
    if m.islnk():
        return  # a hardlink shares its target's inode and metadata
    os.chown(name, m.uid, m.gid, dir_fd=parent, follow_symlinks=False)
    if not m.issym() and m.mode & 0o6000:
        os.chmod(name, m.mode & 0o7777, dir_fd=parent, follow_symlinks=False)
    os.utime(name, (m.mtime, m.mtime), dir_fd=parent, follow_symlinks=False)


def _extract_regular(tar: TarStream, m: tarfile.TarInfo, root: Root, parts: tuple[str, ...], what: str,
                     result: Extracted) -> None:
    """A regular file: the one member kind a many-file tree is made of, so its path is kept short."""
    parent = root.dir(parts[:-1], create=True)
    assert parent is not None
    mode = m.mode & 0o7777
    fd, gave_way = create_file(root, parent, parts, mode)
    if gave_way:
        result.explicit_dirs.pop(parts, None)
    try:
        size = m.size
        if size:
            # A small file's data is one piece of the stream's read-ahead: write it here,
            # and only what that piece lacks goes through copy_data's loop.
            view = tar.read_view(size)
            left = size - len(view)
            while view:
                view = view[os.write(fd, view):]
            if left:
                copy_data(tar, fd, left, f"{what}: {m.name!r}")
        set_owner_mode(root, fd, parts[:-1], parent, mode, m.uid, m.gid)
        if m.pax_headers:
            _set_xattrs(fd, _xattrs(m), result)
        os.utime(fd, (m.mtime, m.mtime))
    finally:
        os.close(fd)
    result.bytes += size


_REGULAR = frozenset((tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE))
_EXTRACT_TYPES = frozenset((tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE,
                            tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE))


def _replace(root: Root, parts: tuple[str, ...], result: Extracted) -> None:
    """An earlier member of the same name (or what a link made) gives way to a non-directory."""
    root.remove(parts)
    result.explicit_dirs.pop(parts, None)


def _make_node(m: tarfile.TarInfo, label: str, root: Root, name: str, parent: int) -> None:
    """Symlink, hardlink, FIFO or device node `name` in parent; FileExistsError if the name is taken."""
    if m.issym():
        os.symlink(m.linkname, name, dir_fd=parent)
    elif m.islnk():
        target = split_name(m.linkname, f"{label}: hardlink target")
        tparent = root.dir(target[:-1]) if target else None
        tstat = root.lstat(target) if tparent is not None else None
        if tstat is None or stat.S_ISDIR(tstat.st_mode):
            raise UnsafeArchive(f"{label}: hardlink target {m.linkname!r} is not a file extracted "
                                f"earlier from this archive")
        os.link(target[-1], name, src_dir_fd=tparent, dst_dir_fd=parent, follow_symlinks=False)
    elif m.isfifo():
        os.mkfifo(name, m.mode & 0o7777, dir_fd=parent)
    else:
        kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
        os.mknod(name, kind | (m.mode & 0o7777), os.makedev(m.devmajor, m.devminor), dir_fd=parent)


def apply_dir_meta(root: Root, meta: DirMeta, result: Extracted) -> None:
    """Owner, mode, xattrs and mtime of an explicit directory, through an fd (never a link)."""
    fd = root.dir(meta.parts)
    if fd is None:
        return
    root.forget_group(meta.parts)
    os.fchown(fd, meta.uid, meta.gid)
    os.fchmod(fd, meta.mode)
    _set_xattrs(fd, meta.xattrs, result)
    os.utime(fd, (meta.mtime, meta.mtime))


# ---------------------------------------------------------------- merge


class MergePlan:
    """Checked operations: move staged entries into the target, then deletions (filled by plan_merge)."""

    __slots__ = ("deletions", "moves", "replaces")

    def __init__(self) -> None:
        self.moves: list[tuple[str, ...]] = []       # target absent
        self.replaces: list[tuple[str, ...]] = []    # target removed first
        self.deletions: list[tuple[str, ...]] = []


def plan_merge(staging: Root, target: Root, explicit_dirs: Iterable[tuple[str, ...]],
               deleted: Iterable[str], what: str) -> MergePlan:
    """Check the staged tree and deletions against the target; change nothing.

    A staged directory that the archive did not name explicitly (a parent
    tar created implicitly) must meet a real directory or nothing: meeting a
    symlink means the member path went through it, and is refused.
    """
    explicit = set(explicit_dirs)
    plan = MergePlan()
    _plan_dir(staging, target, (), explicit, plan, what)
    for entry in deleted:
        target.trim()
        staging.trim()
        parts = split_name(entry, f"{what}: deleted.files", allow_absolute=True)
        if not parts:
            raise UnsafeArchive(f"{what}: deleted.files may not name the root")
        # Refuse a path through a symlink, in the target now or in what the merge will bring;
        # a missing parent is fine (nothing to delete).
        target.dir(parts[:-1])
        staging.dir(parts[:-1])
        plan.deletions.append(parts)
    return plan


def _plan_dir(staging: Root, target: Root, top: tuple[str, ...], explicit: set[tuple[str, ...]],
              plan: MergePlan, what: str) -> None:
    """Walk the staged tree (iteratively: an archive may nest deeper than Python recurses)."""
    stack = [top]
    while stack:
        parts = stack.pop()
        fd = staging.dir(parts)
        assert fd is not None
        for name in sorted(os.listdir(fd)):
            staging.trim()
            target.trim()
            child = parts + (name,)
            sst = staging.lstat(child)
            assert sst is not None
            tst = target.lstat(child)
            if tst is None:
                plan.moves.append(child)
            elif stat.S_ISDIR(sst.st_mode) and stat.S_ISDIR(tst.st_mode):
                stack.append(child)
            elif stat.S_ISDIR(sst.st_mode) and child not in explicit:
                raise UnsafeArchive(f"{what}: path {_display(child)!r} goes through a symlink or non-directory "
                                    f"already in the target")
            else:
                plan.replaces.append(child)


def move(staging: Root, target: Root, parts: tuple[str, ...]) -> None:
    """Rename one staged entry into the target (copy only across filesystems)."""
    sparent = staging.dir(parts[:-1])
    tparent = target.dir(parts[:-1], create=True)
    if sparent is None or tparent is None:
        # dir_fd=None would mean the working directory: never rename from or into that.
        raise FileNotFoundError(errno.ENOENT, "staged entry's directory is gone", _display(parts))
    try:
        os.rename(parts[-1], parts[-1], src_dir_fd=sparent, dst_dir_fd=tparent)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        copy_entry(sparent, tparent, parts[-1])
    staging.forget(parts)


def copy_entry(src_dir: int, dst_dir: int, name: str) -> None:
    """Copy one entry (a tree for a directory) between directory fds, keeping metadata.

    Used only across filesystems; the source is our own staging, the
    destination name must not exist. Nothing is followed on either side.
    """
    st = os.stat(name, dir_fd=src_dir, follow_symlinks=False)
    if stat.S_ISDIR(st.st_mode):
        os.mkdir(name, 0o700, dir_fd=dst_dir)
        sfd = os.open(name, O_DIR, dir_fd=src_dir)
        dfd = os.open(name, O_DIR, dir_fd=dst_dir)
        try:
            for child in os.listdir(sfd):
                copy_entry(sfd, dfd, child)
            _copy_meta(sfd, dfd, st)
        finally:
            os.close(sfd)
            os.close(dfd)
    elif stat.S_ISREG(st.st_mode):
        sfd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_dir)
        dfd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                      dir_fd=dst_dir)
        try:
            left = st.st_size
            while left > 0:
                n = os.copy_file_range(sfd, dfd, min(left, 1 << 30))
                if n == 0:
                    break
                left -= n
            _copy_meta(sfd, dfd, st)
        finally:
            os.close(sfd)
            os.close(dfd)
    elif stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(name, dir_fd=src_dir), name, dir_fd=dst_dir)
        os.chown(name, st.st_uid, st.st_gid, dir_fd=dst_dir, follow_symlinks=False)
        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst_dir, follow_symlinks=False)
    else:
        os.mknod(name, st.st_mode, st.st_rdev, dir_fd=dst_dir)
        os.chown(name, st.st_uid, st.st_gid, dir_fd=dst_dir, follow_symlinks=False)
        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst_dir, follow_symlinks=False)


def _copy_meta(sfd: int, dfd: int, st: os.stat_result) -> None:
    os.fchown(dfd, st.st_uid, st.st_gid)
    os.fchmod(dfd, stat.S_IMODE(st.st_mode))
    for attr in os.listxattr(sfd):
        try:
            os.setxattr(dfd, attr, os.getxattr(sfd, attr))
        except OSError as e:
            if e.errno not in (errno.ENOTSUP, errno.EPERM):
                raise
    os.utime(dfd, ns=(st.st_atime_ns, st.st_mtime_ns))


def make_staging(target: Root, prefix: str, home: Root | None = None) -> tuple[str, Callable[[], None]]:
    """Create a fresh staging dir (0700) in home (default: inside target); return its name and a remover.

    home must be on target's filesystem (applying is a rename). The dir is
    flock-ed until removed, so a later call can tell a killed run's staging
    (lock free) from a live one's.
    """
    import fcntl
    import secrets
    parent = home or target
    for _ in range(100):
        name = f"{prefix}{secrets.token_hex(4)}"
        try:
            os.mkdir(name, 0o700, dir_fd=parent.fd)
            break
        except FileExistsError:
            continue
    else:
        raise RuncCkptError(f"cannot create a staging directory in {parent.path}")
    lock_fd = os.open(name, O_DIR, dir_fd=parent.fd)
    fcntl.flock(lock_fd, fcntl.LOCK_EX)

    def remove() -> None:
        try:
            safe_remove.remove_tree(name, dir_fd=parent.fd)
        except FileNotFoundError:
            pass
        finally:
            with contextlib.suppress(OSError):
                os.close(lock_fd)

    return name, remove
