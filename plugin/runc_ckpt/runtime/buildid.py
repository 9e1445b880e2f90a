"""An ELF file's GNU build-ID: the cheap identity CRIU itself checks for mapped executables.

CRIU records a mapped ELF file's build-ID at dump and refuses the restore
when the file it finds has another one. Reading the note from the program
headers costs a few small reads, far less than hashing the file, so the
pre-flight compares build-IDs the way CRIU will.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

PT_NOTE = 4
NT_GNU_BUILD_ID = 3
MAX_NOTES = 1 << 20


def read(path: str) -> str | None:
    """The hex build-ID of the ELF file at path; None for a non-ELF file or one without the note."""
    try:
        with open(path, "rb") as f:
            return _from_file(f)
    except (OSError, struct.error, ValueError):
        return None


def _from_file(f: BinaryIO) -> str | None:
    ident = f.read(16)
    if len(ident) < 16 or ident[:4] != b"\x7fELF" or ident[4] not in (1, 2) or ident[5] not in (1, 2):
        return None
    is64, end = ident[4] == 2, "<" if ident[5] == 1 else ">"
    if is64:
        f.seek(0x20)
        phoff, = struct.unpack(end + "Q", f.read(8))
        f.seek(0x36)
    else:
        f.seek(0x1C)
        phoff, = struct.unpack(end + "I", f.read(4))
        f.seek(0x2A)
    phentsize, phnum = struct.unpack(end + "HH", f.read(4))
    for i in range(min(phnum, 256)):
        f.seek(phoff + i * phentsize)
        if is64:
            p_type, _flags, p_offset, _va, _pa, p_filesz = struct.unpack(end + "IIQQQQ", f.read(40))
        else:
            p_type, p_offset, _va, _pa, p_filesz = struct.unpack(end + "IIIII", f.read(20))
        if p_type != PT_NOTE or p_filesz > MAX_NOTES:
            continue
        f.seek(p_offset)
        found = _in_notes(f.read(p_filesz), end)
        if found:
            return found
    return None


def _in_notes(data: bytes, end: str) -> str | None:
    pos = 0
    while pos + 12 <= len(data):
        namesz, descsz, ntype = struct.unpack_from(end + "III", data, pos)
        pos += 12
        name = data[pos:pos + namesz]
        pos += (namesz + 3) & ~3
        desc = data[pos:pos + descsz]
        pos += (descsz + 3) & ~3
        if ntype == NT_GNU_BUILD_ID and name.rstrip(b"\0") == b"GNU":
            return desc.hex()
    return None
