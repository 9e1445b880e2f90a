"""The mode CRIU recorded for a dumped container's root directory.

CRIU checks on restore that each process's root directory has exactly the
mode it had at dump time (`File . has bad mode 040755 (expect 040555)`):
podman's image layers have a 0555 root, a runc bundle's rootfs usually 0755.
The mode is in the images: pstree.img's first entry is the init task,
fs-<pid>.img holds its root_id, and files.img the reg_file_entry with that
id, whose `mode` field is the recorded st_mode. CRIU images are a u32
common magic, a u32 image magic, then u32-length-prefixed protobuf entries.
"""

from __future__ import annotations

import os
import struct

# The wire-format decoder is shared with the stats reader.
from runc_ckpt.runtime.criu.stats import fields

# Field numbers from CRIU's images/{pstree,fs,fdinfo,regfile}.proto.
PSTREE_PID = 1
FS_ROOT_ID = 2
FILE_ENTRY_ID, FILE_ENTRY_REG = 2, 3
REG_NAME, REG_MODE = 6, 10


def _entries(path: str) -> list[dict[int, int | bytes]]:
    with open(path, "rb") as f:
        data = f.read()
    out = []
    pos = 8  # two magics
    while pos + 4 <= len(data):
        (size,) = struct.unpack_from("<I", data, pos)
        pos += 4
        out.append(fields(data[pos:pos + size]))
        pos += size
    return out


def _init_root_id(image_dir: str) -> int | None:
    """The file id of the init task's root dir (None if the images do not say)."""
    try:
        pstree = _entries(os.path.join(image_dir, "pstree.img"))
        pid = pstree[0].get(PSTREE_PID) if pstree else None
        if not isinstance(pid, int):
            return None
        fs = _entries(os.path.join(image_dir, f"fs-{pid}.img"))
        root_id = fs[0].get(FS_ROOT_ID) if fs else None
        return root_id if isinstance(root_id, int) else None
    except (OSError, ValueError, IndexError, struct.error):
        return None


def root_mode(image_dir: str) -> int | None:
    """Permission bits (0o7777) of the init task's root dir as CRIU saw it; None if not found.

    Without pstree/fs images, the first reg-file entry named "/" stands in.
    """
    root_id = _init_root_id(image_dir)
    try:
        fallback = None
        for entry in _entries(os.path.join(image_dir, "files.img")):
            reg = entry.get(FILE_ENTRY_REG)
            if not isinstance(reg, bytes):
                continue
            reg_fields = fields(reg)
            mode = reg_fields.get(REG_MODE)
            if not isinstance(mode, int):
                continue
            if root_id is not None and entry.get(FILE_ENTRY_ID) == root_id:
                return mode & 0o7777
            if fallback is None and reg_fields.get(REG_NAME) == b"/":
                fallback = mode & 0o7777
        return fallback
    except (OSError, ValueError, IndexError, struct.error):
        return None
