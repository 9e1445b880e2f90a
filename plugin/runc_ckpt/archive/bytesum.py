"""The sum of a byte string's bytes, which a tar header's checksum is, computed in C.

`sum(block)` walks a 512-byte header one Python int at a time; for a tree
of many small files it was the largest single cost of parsing (and a
visible one of writing) headers. zlib's Adler-32 keeps, as its low 16 bits,
1 + the sum of the bytes modulo 65521; over at most 256 bytes (at most
256 * 255 = 65280) no reduction happens, so that half is the exact sum.
This is plain arithmetic on a checksum, not a use of Adler-32 as one.
"""

from __future__ import annotations

import zlib

_PIECE = 256     # 1 + 256 * 255 < 65521: Adler-32's sum of a piece this long is never reduced


def byte_sum(data: bytes) -> int:
    """sum(data), exactly."""
    if len(data) <= 2 * _PIECE:      # a tar header block, or its checksum field: no loop (a third of the cost)
        return (zlib.adler32(data[:_PIECE]) & 0xFFFF) + (zlib.adler32(data[_PIECE:]) & 0xFFFF) - 2
    total = 0
    for start in range(0, len(data), _PIECE):
        total += (zlib.adler32(data[start:start + _PIECE]) & 0xFFFF) - 1
    return total
