"""Archive compression: detect it from magic bytes, open compressing/decompressing streams.

zstd is the default and uses zstandard's multi-threaded compressor; gzip and
none are accepted for podman parity. The file name never decides the format.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO, Protocol

from runc_ckpt.base.errors import RuncCkptError

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
ALGORITHMS = ("zstd", "gzip", "none")


def detect(head: bytes) -> str:
    """The compression of a stream from its first bytes: zstd, gzip or none."""
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    return "none"


class Sink(Protocol):
    """Where a compressor writes: the archive file, or a writer that hashes or syncs on the way."""

    def write(self, data: bytes, /) -> int: ...

    def flush(self) -> None: ...


# The streams below are typed BinaryIO for their callers, who write or read and close
# them: gzip.GzipFile and _Uncompressed have those methods but are no BinaryIO
# subclasses, and zstandard's stubs ask for IO[bytes] where its writer only calls
# write() and flush() -- hence the few ignores ("see above"), each on its line.


def compressing_writer(raw: Sink, algorithm: str, level: int = 3, threads: int = 0,
                       expected_size: int | None = None) -> BinaryIO:
    """Wrap raw in a compressor; closing the result flushes it but leaves raw open.

    expected_size: how many bytes the caller will write, when it knows (None: unknown, maybe many)."""
    if algorithm == "zstd":
        import zstandard
        workers = threads or (os.cpu_count() or 1)
        params = zstandard.ZstdCompressionParameters.from_level(level, threads=workers)
        if expected_size is not None and expected_size < 4 << params.window_log:
            # zstd's workers take jobs of 4 x its window (8 MiB at level 3): less input than one job gets
            # no help from them, only their start (~0.7 ms of a tiny checkpoint's export, 1 MB of images).
            params = zstandard.ZstdCompressionParameters.from_level(level)
        elif params.strategy <= zstandard.STRATEGY_LAZY:
            # Multi-threaded jobs restart matching at each job boundary; twice the
            # fast strategies' default overlap (overlap_log 7, not 6) makes the
            # archive ~0.4% smaller, no bigger than `zstd -T0`'s, at no measurable
            # cost in time (bench/export_bench.py). Smaller jobs would save memory
            # but were measurably slower.
            params = zstandard.ZstdCompressionParameters.from_level(level, threads=workers, overlap_log=7)
        cctx = zstandard.ZstdCompressor(compression_params=params)
        return cctx.stream_writer(raw, closefd=False)  # type: ignore[arg-type]  # see above
    if algorithm == "gzip":
        level = min(max(level, 1), 9)
        import gzip  # here, not at the top: only gzip archives need it
        return gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=level)  # type: ignore[return-value]  # see above
    if algorithm == "none":
        return _Uncompressed(raw)  # type: ignore[return-value]  # see above
    raise RuncCkptError(f"unknown compression {algorithm!r}: choose one of {', '.join(ALGORITHMS)}")


def end_frame(writer: BinaryIO) -> None:
    """End compressing_writer()'s current zstd frame: what follows may be another frame, written below it."""
    import zstandard
    writer.flush(zstandard.FLUSH_FRAME)  # type: ignore[call-arg]  # zstandard's writer takes a flush mode


_SKIPPABLE = struct.Struct("<II")
_SKIPPABLE_MAGIC = 0x184D2A50        # zstd's skippable frames: decoders pass over their content


def frame_of_size(data: bytes, size: int, level: int) -> bytes:
    """data as a zstd frame of exactly `size` bytes: compressed, then a skippable frame filling the rest
    (a slot reserved in the file before data was known, see archive.export)."""
    import zstandard
    frame = zstandard.ZstdCompressor(level=level).compress(data)
    gap = size - len(frame)
    if gap == 0:
        return frame
    if gap < _SKIPPABLE.size:
        raise RuncCkptError(f"internal error: a {len(data)}-byte frame does not fit its {size}-byte slot")
    return frame + _SKIPPABLE.pack(_SKIPPABLE_MAGIC, gap - _SKIPPABLE.size) + bytes(gap - _SKIPPABLE.size)


def decompressing_reader(raw: BinaryIO) -> BinaryIO:
    """A reader of the decompressed stream; raw must support peek() or be seekable."""
    head = raw.peek(4)[:4] if hasattr(raw, "peek") else _peek_seek(raw)
    algorithm = detect(head)
    if algorithm == "zstd":
        import zstandard
        # Our archives may hold several frames in a row (archive.tarstage splices one in).
        return zstandard.ZstdDecompressor().stream_reader(raw, closefd=False, read_across_frames=True)
    if algorithm == "gzip":
        import gzip  # here, not at the top: only gzip archives need it
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]  # see above
    return raw


def _peek_seek(raw: BinaryIO) -> bytes:
    pos = raw.tell()
    head = raw.read(4)
    raw.seek(pos)
    return head


class _Uncompressed:
    """A pass-through writer whose close() does not close the underlying file."""

    def __init__(self, raw: Sink) -> None:
        self._raw = raw

    def write(self, data: bytes) -> int:
        return self._raw.write(data)

    def flush(self) -> None:
        self._raw.flush()

    def close(self) -> None:
        self._raw.flush()
