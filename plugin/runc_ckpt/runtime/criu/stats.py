"""Decode CRIU's stats-dump / stats-restore images.

Layout: u32 magic (0x55105940, images), u32 magic (0x57093306, stats),
u32 size, then a protobuf `stats_entry { dump = 1; restore = 2; }`. All the
fields we want are varints, so a few lines of wire-format decoding do.
"""

from __future__ import annotations

import struct

from runc_ckpt.base.errors import RuncCkptError

IMG_SERVICE_MAGIC = 0x55105940
STATS_MAGIC = 0x57093306

# Field numbers from CRIU's images/stats.proto.
DUMP_FIELDS = {1: "freezing_time", 2: "frozen_time", 3: "memdump_time", 4: "memwrite_time",
               5: "pages_scanned", 6: "pages_skipped_parent", 7: "pages_written", 8: "irmap_resolve",
               9: "pages_lazy", 10: "page_pipes", 11: "page_pipe_bufs", 12: "shpages_scanned",
               13: "shpages_skipped_parent", 14: "shpages_written"}
RESTORE_FIELDS = {1: "pages_compared", 2: "pages_skipped_cow", 3: "forking_time", 4: "restore_time",
                  5: "pages_restored"}
# What podman prints under criu_statistics.
PODMAN_DUMP_KEYS = ("freezing_time", "frozen_time", "memdump_time", "memwrite_time", "pages_scanned",
                    "pages_written")
PODMAN_RESTORE_KEYS = ("pages_compared", "pages_skipped_cow", "forking_time", "restore_time",
                       "pages_restored")


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, pos


def fields(buf: bytes) -> dict[int, int | bytes]:
    out: dict[int, int | bytes] = {}
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            out[number], pos = _varint(buf, pos)
        elif wire == 2:
            length, pos = _varint(buf, pos)
            out[number] = buf[pos:pos + length]
            pos += length
        elif wire == 1:
            out[number] = int.from_bytes(buf[pos:pos + 8], "little")
            pos += 8
        elif wire == 5:
            out[number] = int.from_bytes(buf[pos:pos + 4], "little")
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return out


def decode(data: bytes) -> dict[str, dict[str, int]]:
    """{'dump': {...}} and/or {'restore': {...}} from a stats image's bytes."""
    try:
        magic1, magic2, size = struct.unpack_from("<III", data)
        if (magic1, magic2) != (IMG_SERVICE_MAGIC, STATS_MAGIC):
            raise ValueError("bad magic")
        entry = fields(data[12:12 + size])
        result: dict[str, dict[str, int]] = {}
        for number, name, names in ((1, "dump", DUMP_FIELDS), (2, "restore", RESTORE_FIELDS)):
            sub = entry.get(number)
            if isinstance(sub, bytes):
                result[name] = {names[k]: v for k, v in fields(sub).items()
                                if k in names and isinstance(v, int)}
        return result
    except (struct.error, ValueError) as e:
        raise RuncCkptError(f"cannot decode CRIU stats image: {e}") from None


def read(path: str) -> dict[str, dict[str, int]]:
    try:
        with open(path, "rb") as f:
            return decode(f.read())
    except OSError as e:
        raise RuncCkptError(f"cannot read CRIU stats {path}: {e.strerror}") from None


def podman_view(stats: dict[str, int], keys: tuple[str, ...]) -> dict[str, int]:
    """The criu_statistics object podman prints: its keys, zero where CRIU had none."""
    return {k: int(stats.get(k, 0)) for k in keys}
