"""A CRIU images dir encrypted at rest, for the checkpoints engines package themselves (node-level encryption).

With a node encryption key, a plain `runc checkpoint --image-path DIR` (as
podman, CRI-O and containerd call it) has CRIU dump into tmpfs
(state/tmpfsimages) and DIR receives every image file sealed (trust.seal:
NAME.sealed) but CRIU's inventory.img, which podman checks for before a
restore and which holds no memory (image version, root IDs, flags); then
this dir's listing, written last:

  runc-ckpt.sealed.json  {"format": "runc-ckpt-sealed-images", "version": 1, "files": [NAME, ...]}

So the pages an engine copies into its own archive are never on disk in the
clear. A plain `runc restore --image-path DIR` finds the listing, opens every
file into tmpfs with the node's decryption key just before CRIU reads them,
and wipes them afterwards. The listing is untrusted input: names must be
plain file names, and each file's records are authenticated as they are
read. A signing key signs DIR as it is on disk (trust.imagesdir), sealed
files and listing included, so the signature is checked before anything is
decrypted.
"""

from __future__ import annotations

import io
import json
import os
import stat
from collections.abc import Sequence

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.runtime import atomicfile
from runc_ckpt.trust import seal

TYPE_CHECKING = False  # typing's flag, without importing typing (base/record.py says why)
if TYPE_CHECKING:
    from runc_ckpt.trust.sealkeys import SealKey

LISTING = "runc-ckpt.sealed.json"
FORMAT = "runc-ckpt-sealed-images"
VERSION = 1
SUFFIX = ".sealed"
# Kept in the clear: podman's restore stats checkpoint/inventory.img first; it holds no process data.
PLAIN = frozenset({"inventory.img"})
MAX_FILES = 100_000
_MAX_LISTING = 16 << 20
_COPY = 1 << 20


def is_sealed(directory: str) -> bool:
    return os.path.isfile(os.path.join(directory, LISTING))


def seal_into(source: str, target: str, recipients: Sequence[SealKey]) -> None:
    """Seal every file of the images dir `source` into `target` (created 0700 if missing); the listing last.

    A symlink (a pre-dump's `parent`) is refused: the parent's images would stay in the clear.
    """
    names = []
    with os.scandir(source) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        mode = entry.stat(follow_symlinks=False).st_mode
        if not stat.S_ISREG(mode):
            raise RuncCkptError(f"images dir {source}: {entry.name} is not a regular file; only a dump without "
                                "a parent can be sealed")
        names.append(entry.name)
    try:
        os.makedirs(target, mode=0o700, exist_ok=True)
        for name in names:
            if name in PLAIN:
                _copy(os.path.join(source, name), os.path.join(target, name))
            else:
                _seal_file(os.path.join(source, name), os.path.join(target, name + SUFFIX), recipients)
    except OSError as e:
        raise RuncCkptError(f"sealing the images into {target}: {e.strerror}: {e.filename}") from None
    doc = {"format": FORMAT, "version": VERSION, "files": names}
    atomicfile.write_bytes(os.path.join(target, LISTING), json.dumps(doc, indent=1).encode() + b"\n", 0o600)


def _seal_file(src: str, dst: str, recipients: Sequence[SealKey]) -> None:
    with open(src, "rb") as f, atomicfile.writing(dst, 0o600) as raw:
        out = io.BufferedWriter(raw, _COPY)        # an unbuffered file may take only part of a write
        sealer = seal.SealWriter(out, recipients)
        while chunk := f.read(_COPY):
            sealer.write(chunk)
        sealer.close()
        out.flush()
        out.detach()                               # raw is atomicfile's to commit and close


def _copy(src: str, dst: str) -> None:
    with open(src, "rb") as f:
        atomicfile.write_bytes(dst, f.read(), 0o600)


def listed(directory: str) -> list[str]:
    """The file names the listing of a sealed dir names (untrusted: each checked to be a plain name)."""
    path = os.path.join(directory, LISTING)
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_LISTING + 1)
        doc = json.loads(data)
        if len(data) > _MAX_LISTING or not isinstance(doc, dict) or doc.get("format") != FORMAT \
                or doc.get("version") != VERSION or not isinstance(doc.get("files"), list):
            raise ValueError("not a runc-ckpt sealed images listing")
        names = doc["files"]
    except OSError as e:
        raise RuncCkptError(f"{path}: {e.strerror}") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise RuncCkptError(f"{path}: {e}") from None
    if len(names) > MAX_FILES or not all(
            isinstance(n, str) and n and n not in (".", "..") and "/" not in n and "\0" not in n for n in names):
        raise RuncCkptError(f"{path}: a file name that is not a plain name")
    return [str(n) for n in names]


def open_into(directory: str, target: str, keys: Sequence[SealKey]) -> None:
    """Decrypt every listed file of the sealed dir into `target` (an existing, empty dir of ours).

    Each file is authenticated record by record; any failure raises one line naming the file.
    """
    for name in listed(directory):
        src = os.path.join(directory, name if name in PLAIN else name + SUFFIX)
        try:
            fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            raise RuncCkptError(f"sealed images dir {directory}: {name}{SUFFIX}: {e.strerror}") from None
        with os.fdopen(fd, "rb") as f, open(os.path.join(target, name), "xb") as out:
            reader = seal.SealReader(f, keys, src) if name not in PLAIN else f
            while chunk := reader.read(_COPY):
                out.write(chunk)
