"""Streaming tar writer: one pass, no temporary files, sha256 of each member while it streams.

Why not tarfile.TarFile: an export nests whole trees (the rootfs diff, each
volume) as *uncompressed inner tars* inside the one compressed outer tar, and
those inner tars must never touch the disk. A tar header needs the member's
size up front, so an inner tar is first planned (a stat pre-pass gives every
entry's header size and data size), then streamed; the plan is kept in an
EntrySpool, so a million-file tree costs no more memory than a small one. The headers are produced
by `encode_header`, which is deterministic, so the size announced in the pre-pass is
exactly what streams later. File data is copied at the size announced: a file
that grows or shrinks in between (container left running) is truncated or
zero-padded, like GNU tar's "file changed as we read it", and never corrupts
the stream.

Speed matters for trees of tens of thousands of small files, so the common
header (short ASCII name, no xattrs) is encoded by hand; anything else
(long or non-ASCII names, xattrs, huge numbers) goes through tarfile's PAX
encoder, whose output is the same every time for the same entry.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import stat
import struct
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from typing import BinaryIO, TypeAlias

from runc_ckpt.archive.hashpipe import HashPipe
from runc_ckpt.archive.manifest import MemberDigest
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.progress import NullProgress, Progress

BLOCK = 512
CHUNK = 1 << 20            # copy/aggregation size: big writes keep the compressor and hasher busy
SMALL = 1 << 16            # files below this are read whole in add_tree's hot path, bigger ones in CHUNK pieces
END_OF_ARCHIVE = bytes(2 * BLOCK)
_ZEROS = memoryview(bytes(CHUNK))
_PADS = [bytes(n) for n in range(512)]
PIPE_MIN = 8 * CHUNK       # members at least this big are hashed in a HashPipe thread (see TarWriter)
PIPE_DEPTH = 2             # pieces of ~CHUNK queued for it: each is a copy held until hashed (peak RSS)

# Entry kinds, as tar type flags.
REG, LNK, SYM, CHR, BLK, DIR, FIFO = (tarfile.REGTYPE, tarfile.LNKTYPE, tarfile.SYMTYPE, tarfile.CHRTYPE,
                                      tarfile.BLKTYPE, tarfile.DIRTYPE, tarfile.FIFOTYPE)
_MAX8 = 8 ** 7             # largest number an 8-byte octal field holds, exclusive
_MAX12 = 8 ** 11
XATTR_PREFIX = "SCHILY.xattr."   # GNU tar --xattrs / star spelling


# An Entry as plain values, in __init__'s order (see Entry.record): what EntrySpool marshals.
EntryRecord: TypeAlias = tuple[str, str | None, bytes, int, int, int, int, int, str, int, int,
                               dict[str, bytes] | None, int, bool | None]


def padding(size: int) -> int:
    """Bytes of zero padding after `size` bytes of data."""
    return -size % BLOCK


class Entry:
    """One planned tar entry. Slots keep a 20k-file plan small in memory."""

    __slots__ = ("devmajor", "devminor", "gid", "ino", "kind", "linkname", "mode", "mtime", "name", "simple",
                 "size", "source", "uid", "xattrs")

    def __init__(self, name: str, kind: bytes, mode: int = 0o644, *, source: str | None = None,
                 uid: int = 0, gid: int = 0, size: int = 0, mtime: int = 0, linkname: str = "",
                 devmajor: int = 0, devminor: int = 0, xattrs: dict[str, bytes] | None = None,
                 ino: int = 0) -> None:
        self.name = name + "/" if kind == DIR and not name.endswith("/") else name
        self.source = source      # where regular-file data is read from; None: the tree's root + name
        self.kind = kind
        self.mode = mode & 0o7777
        self.uid, self.gid = uid, gid
        self.size = size if kind == REG else 0
        self.mtime = mtime
        self.linkname = linkname
        self.devmajor, self.devminor = devmajor, devminor
        self.xattrs = xattrs or None
        self.ino = ino            # inode the data must come from (0: do not check)
        self.simple: bool | None = None   # whether a plain ustar header holds it (see _simple)

    @classmethod
    def regular(cls, name: str, source: str | None, st: os.stat_result) -> Entry:
        """A regular file without xattrs or other links (the fast path of a tree walk)."""
        e = cls.__new__(cls)
        e.name, e.source, e.kind, e.mode, e.uid, e.gid = name, source, REG, st.st_mode & 0o7777, st.st_uid, st.st_gid
        e.size, e.mtime, e.linkname, e.devmajor, e.devminor = st.st_size, int(st.st_mtime), "", 0, 0
        e.xattrs, e.ino, e.simple = None, st.st_ino, None
        return e

    def record(self) -> EntryRecord:
        """The entry as a tuple of plain values (marshal-able: for EntrySpool)."""
        return (self.name, self.source, self.kind, self.mode, self.uid, self.gid, self.size, self.mtime,
                self.linkname, self.devmajor, self.devminor, self.xattrs, self.ino, self.simple)

    @classmethod
    def from_record(cls, r: EntryRecord) -> Entry:
        e = cls.__new__(cls)
        (e.name, e.source, e.kind, e.mode, e.uid, e.gid, e.size, e.mtime, e.linkname, e.devmajor, e.devminor,
         e.xattrs, e.ino, e.simple) = r
        return e

    @classmethod
    def from_stat(cls, name: str, path: str, st: os.stat_result, xattrs: dict[str, bytes] | None = None,
                  linkname: str = "") -> Entry:
        """Entry for a file as lstat saw it; `linkname` set makes it a hardlink to that member."""
        fmt = stat.S_IFMT(st.st_mode)
        if linkname:
            kind = LNK
        elif fmt == stat.S_IFREG:
            return cls(name, REG, st.st_mode, source=path, uid=st.st_uid, gid=st.st_gid, size=st.st_size,
                       mtime=int(st.st_mtime), xattrs=xattrs, ino=st.st_ino)
        elif fmt == stat.S_IFDIR:
            kind = DIR
        elif fmt == stat.S_IFLNK:
            kind, linkname = SYM, os.readlink(path)
        elif fmt in (stat.S_IFCHR, stat.S_IFBLK):
            return cls(name, CHR if fmt == stat.S_IFCHR else BLK, st.st_mode, uid=st.st_uid, gid=st.st_gid,
                       mtime=int(st.st_mtime), xattrs=xattrs, devmajor=os.major(st.st_rdev),
                       devminor=os.minor(st.st_rdev))
        elif fmt == stat.S_IFIFO:
            kind = FIFO
        else:
            raise ValueError(f"{path}: sockets cannot be archived")
        return cls(name, kind, st.st_mode, uid=st.st_uid, gid=st.st_gid, mtime=int(st.st_mtime),
                   linkname=linkname, xattrs=xattrs)


def _simple(e: Entry) -> bool:
    """Whether a plain ustar header (no PAX records) holds this entry exactly; computed once per entry
    (planning asks for the size, streaming for the bytes)."""
    if e.simple is None:
        e.simple = (e.xattrs is None and len(e.name) <= 100 and e.name.isascii() and len(e.linkname) <= 100
                    and e.linkname.isascii() and 0 <= e.uid < _MAX8 and 0 <= e.gid < _MAX8
                    and 0 <= e.size < _MAX12 and 0 <= e.mtime < _MAX12 and e.devmajor < _MAX8
                    and e.devminor < _MAX8)
    return e.simple


_MAGIC = b"ustar\x0000"
# Checksum of the fixed parts: magic, empty uname/gname/prefix, and the 8
# spaces the checksum field counts as; the variable fields are added per entry.
_FIXED_SUM = sum(_MAGIC) + 8 * 0x20


# name, mode..mtime, checksum, type, linkname, magic+version, uname+gname (empty), devices, prefix+pad.
_USTAR = struct.Struct("100s48s8sc100s8s64x16s167x")


def _ustar(e: Entry) -> bytes:
    """A plain POSIX ustar header; uname/gname stay empty because owners are numeric."""
    name = e.name.encode("ascii")
    link = e.linkname.encode("ascii")
    numbers = b"%07o\0%07o\0%07o\0%011o\0%011o\0" % (e.mode, e.uid, e.gid, e.size, e.mtime)
    devices = b"%07o\0%07o\0" % (e.devmajor, e.devminor)
    checksum = _FIXED_SUM + sum(name) + sum(numbers) + e.kind[0] + sum(link) + sum(devices)
    return _USTAR.pack(name, numbers, b"%06o\0 " % checksum, e.kind, link, _MAGIC, devices)


def _pax(e: Entry) -> bytes:
    info = tarfile.TarInfo(e.name)
    info.type, info.mode, info.uid, info.gid = e.kind, e.mode, e.uid, e.gid
    info.size, info.mtime, info.linkname = e.size, e.mtime, e.linkname
    info.devmajor, info.devminor = e.devmajor, e.devminor
    info.uname = info.gname = ""
    if e.xattrs:
        # Binary values go through surrogateescape: tarfile then writes them raw
        # (hdrcharset=BINARY), which is what GNU tar stores too.
        info.pax_headers = {XATTR_PREFIX + k: v.decode("utf-8", "surrogateescape")
                            for k, v in sorted(e.xattrs.items())}
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape")


def encode_header(e: Entry) -> bytes:
    """The header block(s) of an entry; the same bytes every time for the same entry."""
    return _ustar(e) if _simple(e) else _pax(e)


def header_size(e: Entry) -> int:
    return BLOCK if _simple(e) else len(_pax(e))


def tar_bytes(e: Entry) -> int:
    """Bytes the entry takes in a tar: header block(s), data, padding."""
    return header_size(e) + e.size + padding(e.size)


class EntrySpool:
    """The planned entries of one inner tar, in order, at a memory cost that does not grow with their number.

    A tar header needs the inner tar's size before its first byte, so the
    whole tree is planned before it streams. Holding a million Entry objects
    took ~0.4 KiB each; here at most BATCH of them are in memory, the rest
    sit in an anonymous temp file (unlinked at creation: nothing to clean up
    after a crash) as marshal-encoded batches of plain tuples, read back in
    the same order when the tree streams. A tree of fewer than BATCH entries
    never touches the disk. `tar_size` adds up the inner tar's bytes as
    entries arrive (end-of-archive blocks included). It can be read any
    number of times, one reader at a time (readers share the file position).
    """

    BATCH = 4096
    _LEN = struct.Struct("<Q")

    def __init__(self, spool_dir: str | None = None) -> None:
        self._spool_dir = spool_dir
        self._mem: list[Entry] = []
        self._file: BinaryIO | None = None
        self.count = 0
        self.tar_size = len(END_OF_ARCHIVE)

    def append(self, e: Entry) -> None:
        if len(self._mem) >= self.BATCH:
            self._spill()
        self._mem.append(e)
        self.count += 1
        size = e.size   # tar_bytes(e), spelled out: this runs once per file of the tree
        self.tar_size += (BLOCK if _simple(e) else len(_pax(e))) + size + -size % BLOCK

    def _spill(self) -> None:
        if self._file is None:
            # Kept open across calls, closed by close(): no `with` can hold it.
            self._file = tempfile.TemporaryFile(prefix="runc-ckpt-plan-", dir=self._spool_dir)  # noqa: SIM115
        blob = marshal.dumps([e.record() for e in self._mem])
        self._file.seek(0, os.SEEK_END)      # a reader left mid-way must not make us overwrite
        self._file.write(self._LEN.pack(len(blob)) + blob)
        self._mem = []

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Entry]:
        if self._file is not None:
            self._file.flush()
            self._file.seek(0)
            while True:
                head = self._file.read(self._LEN.size)
                if not head:
                    break
                yield from map(Entry.from_record, marshal.loads(self._file.read(self._LEN.unpack(head)[0])))
        yield from self._mem

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class TreePlan:
    """An inner tar planned by a stat pre-pass: its entries and exact byte size.

    Entries without a `source` read their data from `root`/name, which keeps a
    plan of 100k files tens of MiB smaller than storing every full path.
    `entries` is an EntrySpool (a tree walk) or a list (a few entries made by hand).
    """

    def __init__(self, entries: EntrySpool | list[Entry], root: str | None = None) -> None:
        self.entries = entries
        self.root = root
        self.size = entries.tar_size if isinstance(entries, EntrySpool) else \
            sum(map(tar_bytes, entries)) + len(END_OF_ARCHIVE)



class TarWriter:
    """Writes a tar stream to `out` (e.g. a compressor); records size+sha256 of each regular member.

    Small pieces are gathered into one buffer and handed on in ~CHUNK writes;
    the hash covers only member data, never headers or padding. Reading and
    writing run in the caller's thread, on purpose: with two cores, the zstd
    workers need them both, and a separate writer thread only added GIL
    hand-offs. The multi-threaded compressor already overlaps its compression
    with our reading. A member of PIPE_MIN bytes or more (an inner tar, a big
    image) is hashed by an archive.hashpipe thread instead: each ~CHUNK piece
    is handed over as immutable bytes, and the hash of a many-file tree then
    overlaps the open/read syscalls that keep the main thread busy.
    Member data bytes are counted on `progress` once per hand-off, never per
    small file, so a display costs the hot loop nothing.
    """

    def __init__(self, out: BinaryIO, on_change: Callable[[str], None] | None = None,
                 progress: Progress | NullProgress | None = None) -> None:
        self._out = out
        self._buf = bytearray()
        self._hasher: hashlib._Hash | None = None
        self._pipe: HashPipe | None = None  # the current member's hashing thread, if it is big
        self._hash_from = 0         # offset in _buf where hashed bytes start
        self._member: str | None = None
        self._left = 0              # data bytes still owed to the current member
        self._announced = 0
        self.members: dict[str, MemberDigest] = {}
        self.on_change = on_change or (lambda _msg: None)
        self._progress = progress or NullProgress()
        self._unreported = 0        # member data bytes handed on but not yet counted on _progress

    # -- low level --------------------------------------------------------------------------
    def _flush(self) -> None:
        if not self._buf:
            return
        # With a pipe, an immutable copy (the pipe hashes it after we move on); without, the buffer
        # itself: the compressor copies what it keeps, so the buffer is reusable.
        data = bytes(self._buf) if self._pipe is not None else self._buf
        self._hash(data, self._hash_from)
        self._out.write(data)
        self._hash_from = 0
        self._buf.clear()
        self._report()

    def _hash(self, data: bytes | bytearray | memoryview, start: int) -> None:
        """Hash data[start:] into the current member's digest (none: nothing to do).

        With a pipe, data must be immutable underneath (bytes, or a view of bytes)."""
        if self._hasher is None:
            return
        if self._pipe is not None:
            self._pipe.update(self._hasher, [memoryview(data)[start:]])
        else:
            with memoryview(data) as view:      # released at once: a bytearray can grow again
                self._hasher.update(view[start:])

    def _report(self) -> None:
        self._progress.update(self._unreported)
        self._unreported = 0

    def _put(self, data: bytes | bytearray | memoryview) -> None:
        if len(data) >= CHUNK:
            self._flush()
            self._hash(data, 0)
            self._out.write(data)
            self._report()
        else:
            self._buf += data
            if len(self._buf) >= CHUNK:
                self._flush()

    def _data(self, data: bytes | bytearray | memoryview) -> None:
        """Member data: counted against what the header announced."""
        self._claim(len(data))
        self._put(data)

    def _claim(self, n: int) -> None:
        """Count n bytes of member data against what the header announced, before they are handed on."""
        if n > self._left:
            raise RuncCkptError(f"internal error: archive member {self._member} overflows its announced size")
        self._left -= n
        self._unreported += n

    def _zeros(self, n: int) -> None:
        while n > 0:
            k = min(n, CHUNK)
            self._data(_ZEROS[:k])
            n -= k

    # -- members ----------------------------------------------------------------------------
    def begin(self, name: str, size: int, mode: int = 0o600, mtime: int = 0) -> None:
        """Start a regular-file member of exactly `size` bytes; feed it, then call end()."""
        self._put(encode_header(Entry(name, REG, mode, size=size, mtime=mtime)))
        self._member, self._left, self._announced = name, size, size
        self._hasher = hashlib.sha256()
        self._pipe = HashPipe(PIPE_DEPTH) if size >= PIPE_MIN else None
        self._hash_from = len(self._buf)

    def end(self) -> None:
        if self._left:
            raise RuncCkptError(f"internal error: archive member {self._member} is {self._left} bytes short")
        assert self._hasher is not None and self._member is not None
        if self._pipe is not None:
            self._hash(bytes(self._buf[self._hash_from:]), 0)
            digest = self._pipe.digest(self._hasher)
            self._pipe.close()
        else:
            self._hash(self._buf, self._hash_from)
            digest = self._hasher.hexdigest()
        self._hash_from = len(self._buf)
        self.members[self._member] = MemberDigest(self._announced, digest)
        self._hasher, self._member, self._pipe = None, None, None
        self._put(_ZEROS[:padding(self._announced)])

    def add_bytes(self, name: str, data: bytes, mode: int = 0o600, mtime: int = 0) -> None:
        """Metadata made here, not input read: left out of the progress count (before _data, never below 0)."""
        self.begin(name, len(data), mode, mtime)
        self._unreported -= len(data)
        self._data(data)
        self.end()

    def add_file(self, name: str, path: str) -> None:
        """A regular file from disk, at the size it has when opened."""
        fd = _open_regular(path)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise RuncCkptError(f"{path}: not a regular file")
            self.begin(name, st.st_size, st.st_mode & 0o7777, int(st.st_mtime))
            self._copy_fd(fd, st.st_size, path)
        finally:
            os.close(fd)
        self.end()

    def add_entry(self, e: Entry) -> None:
        """A non-regular member (directory, symlink, ...) of the outer tar."""
        self._put(encode_header(e))

    def add_tree(self, name: str, plan: TreePlan, mtime: int = 0) -> None:
        """An uncompressed inner tar streamed straight from the files of `plan`."""
        self.begin(name, plan.size, 0o600, mtime)
        root = (plan.root or "") + "/"
        # Hot path for trees of many small files: each one's header, data and padding go
        # straight into the buffer, claimed as member data (_claim) once per ~CHUNK, not piece by piece.
        buf = self._buf
        start = len(buf)
        for e in plan.entries:
            size = e.size
            if size < SMALL:
                buf += encode_header(e)
                if size:
                    buf += self._read_small(e, e.source or root + e.name)
                    buf += _PADS[-size % BLOCK]
                if len(buf) >= CHUNK:
                    self._claim(len(buf) - start)
                    self._flush()
                    start = 0
                continue
            self._claim(len(buf) - start)
            self._data(encode_header(e))
            self._copy_entry(e, e.source or root + e.name)
            self._data(_ZEROS[:padding(size)])
            start = len(buf)
        self._claim(len(buf) - start)
        self._data(END_OF_ARCHIVE)
        self.end()

    def add_spliced(self, name: str, splice: Callable[[Callable[[int], bytes]], MemberDigest], mtime: int = 0) -> None:
        """A member whose header and data reach the file below `out` (archive.tarstage's frame): everything
        so far is handed to `out` first; splice(header) writes them, given the header for a size, and
        returns the member's digest; the padding follows through `out`."""
        self._flush()
        digest = splice(lambda size: encode_header(Entry(name, REG, 0o600, size=size, mtime=mtime)))
        self.members[name] = digest
        self._put(_ZEROS[:padding(digest.size)])

    def flush(self) -> None:
        """Hand everything written so far to `out` and flush it (a stream's phase boundary)."""
        self._flush()
        self._out.flush()

    def close(self) -> None:
        """Finish the tar stream (end-of-archive blocks); the caller closes `out`."""
        self._put(END_OF_ARCHIVE)
        self._flush()

    # -- data copying ----------------------------------------------------------------------
    def _open_planned(self, e: Entry, source: str) -> tuple[int, int] | None:
        """(fd, current size) of a planned file; None (and a warning) if it is gone or replaced."""
        try:
            fd = _open_regular(source)
        except OSError:
            self.on_change(f"{source}: file removed before it was read; archived as zeros")
            return None
        st = os.fstat(fd)
        if e.ino and st.st_ino != e.ino:
            os.close(fd)
            self.on_change(f"{source}: file replaced while archiving; archived as zeros")
            return None
        if st.st_size > e.size:
            self.on_change(f"{source}: file grew while being read; truncated")
        return fd, st.st_size

    def _read_small(self, e: Entry, source: str) -> bytes:
        """Exactly e.size bytes of a small file (zero-padded if it shrank)."""
        try:
            fd = os.open(source, _READ_FLAGS)
        except OSError:
            fd = -1
        if fd >= 0:                                   # fast path: the file is as planned
            try:
                st = os.fstat(fd)
                if st.st_ino == e.ino and st.st_size == e.size:
                    data = os.read(fd, e.size)
                    if len(data) == e.size:
                        return data
            finally:
                os.close(fd)
        opened = self._open_planned(e, source)       # changed since the plan: the careful way
        if opened is None:
            return bytes(e.size)
        fd = opened[0]
        try:
            data = os.read(fd, e.size)
            while data and len(data) < e.size:
                more = os.read(fd, e.size - len(data))
                if not more:
                    break
                data += more
        finally:
            os.close(fd)
        if len(data) < e.size:
            self.on_change(f"{source}: file shrank while being read; padded with zeros")
            data += bytes(e.size - len(data))
        return data

    def _copy_entry(self, e: Entry, source: str) -> None:
        opened = self._open_planned(e, source)
        if opened is None:
            self._zeros(e.size)
            return
        fd = opened[0]
        try:
            self._copy_fd(fd, e.size, source)
        finally:
            os.close(fd)

    def _copy_fd(self, fd: int, size: int, path: str) -> None:
        """Copy exactly `size` bytes in CHUNK pieces: stop at `size`, zero-pad if the file shrank.

        Each piece is a new bytes object, not a reused buffer: a HashPipe may still be hashing the last one."""
        left = size
        while left:
            data = os.read(fd, min(left, CHUNK))
            if not data:
                break
            self._data(data)
            left -= len(data)
        if left:
            self.on_change(f"{path}: file shrank while being read; padded with zeros")
            self._zeros(left)


# No symlink swapped in at the last component is followed, and no FIFO blocks us.
_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK


def _open_regular(path: str) -> int:
    return os.open(path, _READ_FLAGS)

