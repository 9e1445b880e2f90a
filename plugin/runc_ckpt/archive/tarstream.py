"""A lean streaming tar reader: our own header parser, member data handed out as memoryviews.

Why not tarfile: its stream mode ("r|") copies every data block several
times (buffer joins and slices in its _Stream), and reading one member at a
time through `TarInfo.fromtarfile` means posing as a TarFile, which depends
on tarfile's internals. Its per-header Python work also cost more than
creating the file on tmpfs for trees of many small files. So the header
blocks are parsed here, once, with one struct unpack per block:
ustar/POSIX (with the 155-byte prefix), old GNU (no prefix), GNU long
names/links ('L'/'K'), PAX extended headers ('x', and global 'g') with path,
linkpath, size, uid, gid, mtime and every other record kept in pax_headers
(SCHILY.xattr.* included), and base-256 numbers. Members are yielded as
plain tarfile.TarInfo objects (the documented, settable data class) with
tarfile's normalisation: trailing slashes dropped, an old-style regular
file whose name ends in "/" is a directory. GNU sparse members keep type
'S' (or PAX GNU.sparse.* records), so callers refuse them as before.
tests/unit/test_tarstream.py checks the parser against GNU tar's gnu, pax,
ustar and v7 output and against tarfile.

Sources implement read_view(n) -> memoryview (1..n bytes; empty at end).
"""

from __future__ import annotations

import struct
import tarfile
from collections.abc import Iterator
from typing import Protocol

from runc_ckpt.archive.bytesum import byte_sum
from runc_ckpt.base.errors import RuncCkptError

BLOCK = tarfile.BLOCKSIZE
_ENCODING, _ERRORS = "utf-8", "surrogateescape"
# name, mode, uid, gid, size, mtime, chksum, type, linkname, magic(8), uname, gname, devmajor, devminor, prefix
_HEADER = struct.Struct("100s8s8s8s12s12s8sc100s8s32s32s8s8s155s12x")
_GNU_MAGIC = b"ustar  \0"      # old GNU: the prefix field holds atime/ctime, not a name
_ZERO_BLOCK = bytes(BLOCK)
_DATA_TYPES = frozenset((tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE))
_KNOWN_TYPES = frozenset(tarfile.SUPPORTED_TYPES)
_DEVICE_TYPES = frozenset((tarfile.CHRTYPE, tarfile.BLKTYPE))
_EXTENDED = frozenset((tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                       tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK))
# Larger long names or PAX headers than any real tar writes: a hostile archive's way to eat memory.
MAX_EXTENDED = 1 << 20
READ_AHEAD = 1 << 20           # what a TarStream asks its source for at a time (see TarStream._take)


class Source(Protocol):
    def read_view(self, n: int) -> memoryview: ...


class Readable(Protocol):
    """A binary file as FileSource reads it."""

    def read(self, n: int, /) -> bytes: ...


class BytesSource:
    """A Source over an in-memory buffer (small archives, devshm, tests)."""

    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)
        self._pos = 0

    def read_view(self, n: int) -> memoryview:
        v = self._view[self._pos:self._pos + n]
        self._pos += len(v)
        return v


class FileSource:
    """A Source over a readable binary file."""

    CHUNK = 1 << 20

    def __init__(self, f: Readable) -> None:
        self._f = f

    def read_view(self, n: int) -> memoryview:
        return memoryview(self._f.read(min(n, self.CHUNK)))


class ViewReader:
    """read(n) for the readers here, built on their zero-copy read_view(n)."""

    def read_view(self, n: int) -> memoryview:
        raise NotImplementedError

    def read(self, n: int) -> bytes:
        out = []
        while n > 0:
            v = self.read_view(n)
            if not v:
                break
            out.append(v)
            n -= len(v)
        return b"".join(out)


class _Corrupt(Exception):
    """A header that is not tar (bad checksum, bad number field)."""


_PAD = b"\0 "


def _number(field: bytes) -> int:
    """A numeric header field: octal (NUL/space terminated), or GNU base-256 (first byte 0x80/0xff)."""
    try:
        return int(field.rstrip(_PAD) or b"0", 8)   # the common case: octal, NUL/space padded
    except ValueError:
        pass
    if field[:1] in (b"\x80", b"\xff"):
        n = int.from_bytes(field[1:], "big")
        return n - (1 << (8 * (len(field) - 1))) if field[0] == 0xff else n
    text = field.split(b"\0", 1)[0].strip()
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise _Corrupt(f"bad number field {bytes(field)!r}") from None


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode(_ENCODING, _ERRORS)


def _checksum_ok(block: bytes, stored: bytes) -> bool:
    # tarfile accepts the unsigned sum and the (historic Sun) signed sum; so does GNU tar.
    want = _number(stored)
    unsigned = byte_sum(block) - byte_sum(stored) + 8 * 0x20     # stored: the checksum field, block[148:156]
    if want == unsigned:
        return True
    # Each byte b >= 0x80 counts as b - 256 (tarfile's "148b8x356b"), the checksum field as spaces.
    high = sum(1 for b in block if b >= 0x80) - sum(1 for b in stored if b >= 0x80)
    signed = unsigned - 256 * high
    return want == signed


def _parse_pax(data: bytes, what: str) -> dict[str, str]:
    """PAX records: '<len> <key>=<value>\\n', len counting the whole record."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data) and data[pos] != 0:
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError:
            raise RuncCkptError(f"{what} is corrupt: bad pax header") from None
        record = data[space + 1:pos + length]
        if space < 0 or length <= 0 or pos + length > len(data) or not record.endswith(b"\n") or b"=" not in record:
            raise RuncCkptError(f"{what} is corrupt: bad pax header")
        key, value = record[:-1].split(b"=", 1)
        # Values are UTF-8 unless hdrcharset=BINARY; surrogateescape keeps raw bytes (xattrs) either way.
        out[key.decode(_ENCODING, _ERRORS)] = value.decode(_ENCODING, _ERRORS)
        pos += length
    return out


class TarStream(ViewReader):
    """Iterate the members of a tar read from a Source; read_view() gives the current member's data.

    `ended` tells whether the end-of-archive zero block was seen: a stream cut
    at a member boundary otherwise looks like a shorter, valid archive.
    """

    def __init__(self, source: Source, what: str) -> None:
        self.source = source
        self.what = what
        self.ended = False
        self._left = 0
        self._pad = 0
        self._global: dict[str, str] = {}
        self._view = memoryview(b"")   # read from the source, not yet handed out

    # -- raw reading -----------------------------------------------------------------------
    def _take(self, n: int) -> memoryview:
        """Up to n bytes (at least one unless the source is at its end), from a piece read ahead.

        A tree of small files is a header block and one short data piece per
        file: taking them from one big piece of the source, not asking the
        source (often a chain of readers) for each, halved a many-file
        extraction's reading cost. Reading ahead never passes the source's
        end: a member's source ends with the member."""
        v = self._view
        if not v:
            v = self.source.read_view(READ_AHEAD)
        self._view = v[n:]
        return v[:n]

    def _block(self) -> bytes | None:
        """The next 512-byte block; None at a clean end (no byte at all); truncated is an error."""
        v = self._take(BLOCK)
        if len(v) == BLOCK:
            return v.tobytes()
        if not v:
            return None
        parts = [v.tobytes()]
        n = len(v)
        while n < BLOCK:
            v = self._take(BLOCK - n)
            if not v:
                raise RuncCkptError(f"{self.what} is truncated")
            parts.append(v.tobytes())
            n += len(v)
        return b"".join(parts)

    def _extended_data(self, size: int) -> bytes:
        if size > MAX_EXTENDED:
            raise RuncCkptError(f"{self.what} is corrupt: an extended header of {size} bytes")
        blocks = []
        for _ in range((size + BLOCK - 1) // BLOCK):
            block = self._block()
            if block is None:
                raise RuncCkptError(f"{self.what} is truncated")
            blocks.append(block)
        return b"".join(blocks)[:size]

    # -- members ---------------------------------------------------------------------------
    def __iter__(self) -> Iterator[tarfile.TarInfo]:
        while True:
            self._skip_rest()
            info = self._next()
            if info is None:
                return
            self._left = info.size if info.type in _DATA_TYPES or info.type not in _KNOWN_TYPES else 0
            self._pad = (-self._left) % BLOCK
            yield info

    def _next(self) -> tarfile.TarInfo | None:
        long_name = long_link = None
        pax: dict[str, str] = {}
        while True:
            block = self._block()
            if block is None:
                return None
            if block == _ZERO_BLOCK:
                self.ended = True
                return None
            (name, mode, uid, gid, size, mtime, chksum, typ, linkname, magic, uname, gname,
             devmajor, devminor, prefix) = _HEADER.unpack(block)
            try:
                # _number's common case, inline: six calls were a fifth of a small file's parsing.
                # Anything else (base-256, odd padding) takes the checked way below, unchanged.
                numbers = (int(mode.rstrip(_PAD) or b"0", 8), int(uid.rstrip(_PAD) or b"0", 8),
                           int(gid.rstrip(_PAD) or b"0", 8), int(size.rstrip(_PAD) or b"0", 8),
                           int(mtime.rstrip(_PAD) or b"0", 8))
                plain_sum = int(chksum.rstrip(_PAD) or b"0", 8) == byte_sum(block) - byte_sum(chksum) + 8 * 0x20
            except ValueError:
                numbers, plain_sum = None, False
            try:
                if not plain_sum and not _checksum_ok(block, chksum):
                    raise _Corrupt("bad checksum")
                size_n = numbers[3] if numbers is not None else _number(size)
                if size_n < 0:
                    raise _Corrupt("negative size")
            except _Corrupt as e:
                raise RuncCkptError(f"{self.what} is corrupt: {e}") from None
            if typ in _EXTENDED:
                data = self._extended_data(size_n)
                if typ == tarfile.GNUTYPE_LONGNAME:
                    long_name = data.split(b"\0", 1)[0].decode(_ENCODING, _ERRORS)
                elif typ == tarfile.GNUTYPE_LONGLINK:
                    long_link = data.split(b"\0", 1)[0].decode(_ENCODING, _ERRORS)
                elif typ == tarfile.XGLTYPE:
                    self._global.update(_parse_pax(data, self.what))
                else:
                    pax.update(_parse_pax(data, self.what))
                continue
            try:
                info = tarfile.TarInfo()
                path = _text(name)
                if prefix[0] and magic != _GNU_MAGIC:
                    path = _text(prefix) + "/" + path
                if numbers is not None:
                    info.mode, info.uid, info.gid, _, info.mtime = numbers
                else:
                    info.mode, info.uid, info.gid, info.mtime = _number(mode), _number(uid), _number(gid), _number(mtime)
                info.size = size_n
                if typ in _DEVICE_TYPES:           # elsewhere the fields are unused (often blank)
                    info.devmajor, info.devminor = _number(devmajor), _number(devminor)
            except _Corrupt as e:
                raise RuncCkptError(f"{self.what} is corrupt: {e}") from None
            info.type = typ
            if linkname[0]:
                info.linkname = _text(linkname)
            if uname[0] or gname[0]:
                info.uname, info.gname = _text(uname), _text(gname)
            if long_name is not None:
                path = long_name
            if long_link is not None:
                info.linkname = long_link
            if self._global or pax:
                headers = {**self._global, **pax}
                info.pax_headers = headers
                self._apply_pax(info, headers)
                path = headers.get("path", path)
            if info.type == tarfile.AREGTYPE and path.endswith("/"):
                info.type = tarfile.DIRTYPE
            if info.type == tarfile.DIRTYPE:
                path = path.rstrip("/")
            info.name = path
            return info

    def _apply_pax(self, info: tarfile.TarInfo, headers: dict[str, str]) -> None:
        if "linkpath" in headers:
            info.linkname = headers["linkpath"]
        info.uname = headers.get("uname", info.uname)
        info.gname = headers.get("gname", info.gname)
        try:
            for key in ("size", "uid", "gid"):
                if key in headers:
                    setattr(info, key, int(headers[key]))
            if "mtime" in headers:
                info.mtime = float(headers["mtime"])
        except ValueError:
            raise RuncCkptError(f"{self.what} is corrupt: bad number in a pax header") from None
        if info.size < 0:
            raise RuncCkptError(f"{self.what} is corrupt: negative size")
        if any(k.startswith("GNU.sparse.") for k in headers):
            info.type = tarfile.GNUTYPE_SPARSE

    def read_view(self, n: int) -> memoryview:
        """Up to n bytes of the current member's data (empty: all read)."""
        if self._left <= 0:
            return memoryview(b"")
        v = self._take(min(n, self._left))
        if not v:
            raise RuncCkptError(f"{self.what} is truncated")
        self._left -= len(v)
        return v

    def _skip_rest(self) -> None:
        while self._left > 0:
            self.read_view(1 << 20)
        while self._pad > 0:
            v = self._take(self._pad)
            if not v:
                raise RuncCkptError(f"{self.what} is truncated")
            self._pad -= len(v)
