"""Build CRIU images in its wire format for tests: protobuf varints and fields.

Shared by the tests that feed synthetic stats and file images to our readers
(runc_ckpt.runtime.criu.stats, runc_ckpt.runtime.criu.rootmode).
"""

from __future__ import annotations


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number: int, value: int | bytes) -> bytes:
    """A varint field for an int, a length-delimited one for bytes."""
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    return varint(number << 3 | 2) + varint(len(value)) + value
