"""A lean streaming tar reader: tarfile parses the headers, data moves as memoryviews.

tarfile's stream mode ("r|") copies every data block several times
(buffer joins and slices in its _Stream); for multi-GiB rootfs diffs that
costs more than decompression. Here headers (ustar, PAX incl. xattrs, GNU
long names) are parsed by tarfile.TarInfo.fromtarfile, the documented way to
read one member from an object with `fileobj`, `encoding`, `errors`,
`pax_headers` and `offset`, while member data is handed out as views of the
source's buffers, never joined. Sources implement read(n) -> bytes and
read_view(n) -> memoryview (1..n bytes; empty at end) and tell().
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from typing import Protocol

from runc_ckpt.frontend.errors import RuncCkptError

BLOCK = tarfile.BLOCKSIZE


class Source(Protocol):
    def read(self, n: int) -> bytes: ...
    def read_view(self, n: int) -> memoryview: ...
    def tell(self) -> int: ...


class BytesSource:
    """A Source over an in-memory buffer (small archives, devshm, tests)."""

    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)
        self._pos = 0

    def read(self, n: int) -> bytes:
        return bytes(self.read_view(n))

    def read_view(self, n: int) -> memoryview:
        v = self._view[self._pos:self._pos + n]
        self._pos += len(v)
        return v

    def tell(self) -> int:
        return self._pos


class FileSource:
    """A Source over a readable binary file."""

    CHUNK = 1 << 20

    def __init__(self, f) -> None:
        self._f = f
        self._pos = 0

    def read(self, n: int) -> bytes:
        out = []
        while n > 0:
            data = self._f.read(n)
            if not data:
                break
            out.append(data)
            n -= len(data)
        data = b"".join(out)
        self._pos += len(data)
        return data

    def read_view(self, n: int) -> memoryview:
        data = self._f.read(min(n, self.CHUNK))
        self._pos += len(data)
        return memoryview(data)

    def tell(self) -> int:
        return self._pos


class ViewReader:
    """read(n) for the readers here, built on their zero-copy read_view(n).

    tarfile needs a file-like read(); the hot copy loops use read_view().
    """

    def read_view(self, n: int) -> memoryview:
        raise NotImplementedError

    def read(self, n: int) -> bytes:
        out = []
        while n > 0:
            v = self.read_view(n)
            if not v:
                break
            out.append(bytes(v))
            n -= len(v)
        return b"".join(out)


class TarStream(ViewReader):
    """Iterate the members of a tar read from a Source; read_view() gives the current member's data.

    `ended` tells whether the end-of-archive zero block was seen: a stream cut
    at a member boundary otherwise looks like a shorter, valid archive.
    """

    def __init__(self, source: Source, what: str) -> None:
        self.fileobj = source  # the attribute names TarInfo.fromtarfile reads
        self.encoding = "utf-8"
        self.errors = "surrogateescape"
        self.pax_headers: dict[str, str] = {}
        self.offset = 0
        self.what = what
        self.ended = False
        self._left = 0
        self._pad = 0

    def __iter__(self) -> Iterator[tarfile.TarInfo]:
        while True:
            self._skip_rest()
            try:
                info = tarfile.TarInfo.fromtarfile(self)  # type: ignore[arg-type]
            except tarfile.EOFHeaderError:
                self.ended = True
                return
            except tarfile.EmptyHeaderError:
                return
            except tarfile.TruncatedHeaderError:
                raise RuncCkptError(f"{self.what} is truncated") from None
            except tarfile.HeaderError as e:
                raise RuncCkptError(f"{self.what} is corrupt: {e}") from None
            has_data = info.type in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE) \
                or info.type not in tarfile.SUPPORTED_TYPES
            self._left = info.size if has_data else 0
            self._pad = (-self._left) % BLOCK
            yield info

    def read_view(self, n: int) -> memoryview:
        """Up to n bytes of the current member's data (empty: all read)."""
        if self._left <= 0:
            return memoryview(b"")
        v = self.fileobj.read_view(min(n, self._left))
        if not v:
            raise RuncCkptError(f"{self.what} is truncated")
        self._left -= len(v)
        return v

    def _skip_rest(self) -> None:
        while self._left > 0:
            self.read_view(1 << 20)
        while self._pad > 0:
            v = self.fileobj.read_view(self._pad)
            if not v:
                raise RuncCkptError(f"{self.what} is truncated")
            self._pad -= len(v)
