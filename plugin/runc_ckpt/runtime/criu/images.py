"""What a checkpoint's CRIU images need from the host they restore on, read with CRIU's own decoder.

CRIU refuses a restore late (after the engine has unpacked everything)
when a file the process had open or mapped differs ("File ... has bad
size", a build-ID mismatch), when the images hold established TCP
connections and --tcp-established is missing, and so on. The images say
all of this up front; this module reads them with pycriu (CRIU's own
decoder, the one `crit` uses; contrib/install-deps.sh generates it and
`make install` puts it in the venv), never with a protobuf parser of ours:
CRIU's image format is CRIU's to define.

Only files on the container's root mount are returned: bind mounts,
/proc, /dev and tmpfs mounts are the runtime's, not the image's.
"""

from __future__ import annotations

import importlib
import os
import struct
from types import ModuleType

from runc_ckpt.base.record import Record

# Annotations only: the restore forks its image reader (runtime.criu.imagereader) once this module is
# loaded, and typing (~2.5 ms) would hold that fork back; base/record.py says how the flag works.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO

# pycriu (and the protobuf runtime under it) costs ~70 ms to import, more than the
# whole pre-flight of a recorded checkpoint, which never needs it: it is loaded on
# first use, once, through importlib (not to dodge a cycle: to keep restores cheap).
_decoder: ModuleType | None = None
_BAD_IMAGE: tuple[type[BaseException], ...] = ()


def _pycriu() -> ModuleType | None:
    """pycriu's images module, or None when it is not installed (the pre-flight then skips image reading)."""
    global _decoder, _BAD_IMAGE
    if _decoder is None:
        try:
            _decoder = importlib.import_module("pycriu.images")
            message = importlib.import_module("google.protobuf.message")
        except ImportError:
            return None
        _BAD_IMAGE = (message.DecodeError, _decoder.MagicException)
    return _decoder


def preload() -> None:
    """Import pycriu now, while nothing waits (a pre-copy receiver during the sender's freeze), not at first use."""
    _pycriu()


_UNREADABLE: tuple[type[BaseException], ...] = (OSError, ValueError, KeyError, IndexError, struct.error)
FILES_IMG = "files.img"
REMAP_IMG = "remap-fpath.img"
LOCKS_IMG = "filelocks.img"          # criu/image-desc.c: FILE_LOCKS
CPUINFO_IMG = "cpuinfo.img"
INVENTORY_IMG = "inventory.img"
IPPROTO_TCP = (6, "TCP")  # pycriu shows the protocol by name (its "sk" dict); an int if unknown
USK_EXTERN = 0x1          # criu/include/sockets.h: a unix socket whose peer is outside the dump


class ImageError(Exception):
    """An image pycriu cannot read."""


class ImageFile(Record):
    """A file the restore opens on the root mount: path in the container, CRIU's recorded size/mode/build-ID."""

    path: str
    mode: int
    size: int | None
    build_id: str | None     # hex, as the ELF note holds it


class ImageNeeds:
    """What the images ask of the restoring host (filled in by read() as it goes through them)."""

    __slots__ = ("cpuinfo", "ext_unix_sk", "file_locks", "files", "tcp_established")

    def __init__(self) -> None:
        self.files: list[ImageFile] = []
        self.tcp_established = False
        self.file_locks = False
        self.ext_unix_sk = False
        self.cpuinfo: bytes | None = None      # cpuinfo.img when the dump wrote one


def available() -> bool:
    return _pycriu() is not None


def is_image_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, INVENTORY_IMG)) and os.path.isfile(os.path.join(path, FILES_IMG))


def _decoder_or_error() -> ModuleType:
    decoder = _pycriu()
    if decoder is None:
        raise ImageError("pycriu (CRIU's image decoder) is not installed: run make install")
    return decoder


def load_image(f: BinaryIO, name: str) -> tuple[str, list[dict[str, Any]]]:
    """(magic, entries) of the CRIU image in f, decoded by pycriu; raises ImageError naming `name`."""
    decoder = _decoder_or_error()
    try:
        image = decoder.load(f)
        return str(image["magic"]), list(image["entries"])
    except (*_UNREADABLE, *_BAD_IMAGE) as e:
        raise ImageError(f"{name}: CRIU's decoder cannot read it: {e}") from None


def dump_image(magic: str, entries: list[dict[str, Any]], f: BinaryIO) -> None:
    """Write a CRIU image with pycriu's encoder (the inverse of load_image)."""
    _decoder_or_error().dump({"magic": magic, "entries": entries}, f)


def _load(path: str) -> list[dict[str, Any]]:
    try:
        with open(path, "rb") as f:
            return load_image(f, path)[1]
    except FileNotFoundError:
        return []
    except OSError as e:
        raise ImageError(f"{path}: CRIU's decoder cannot read it: {e}") from None


def _build_id(words: list[int] | None) -> str | None:
    if not words:
        return None
    return struct.pack(f"<{len(words)}I", *words).hex()


def _root_mounts(image_dir: str) -> set[int]:
    ids: set[int] = set()
    for name in os.listdir(image_dir):
        if name.startswith("mountpoints-") and name.endswith(".img"):
            ids.update(int(e["mnt_id"]) for e in _load(os.path.join(image_dir, name))
                       if e.get("mountpoint") == "/" and "mnt_id" in e)
    return ids


def read(image_dir: str) -> ImageNeeds:
    """The needs of the checkpoint in image_dir (raises ImageError; call only when available())."""
    out = ImageNeeds()
    roots = _root_mounts(image_dir)
    remapped = {int(e.get("orig_id", -1)) for e in _load(os.path.join(image_dir, REMAP_IMG))}
    seen: set[str] = set()
    for e in _load(os.path.join(image_dir, FILES_IMG)):
        kind = e.get("type")
        if kind == "REG":
            reg = e.get("reg") or {}
            name = reg.get("name")
            if not isinstance(name, str) or int(reg.get("id", -1)) in remapped:
                continue            # an unlinked file: CRIU restores it from its own ghost copy
            if roots and reg.get("mnt_id") not in roots:
                continue
            if name in seen or not name.startswith("/"):
                continue
            seen.add(name)
            size = reg.get("size")
            out.files.append(ImageFile(name, int(reg.get("mode", 0)), int(size) if size is not None else None,
                                       _build_id(reg.get("build_id"))))
        elif kind == "INETSK":
            isk = e.get("isk") or {}
            # CRIU's own rule (sk-inet.c tcp_connection): TCP with a peer port needs --tcp-established
            if isk.get("proto") in IPPROTO_TCP and isk.get("dst_port"):
                out.tcp_established = True
        elif kind == "UNIXSK":
            usk = e.get("usk") or {}
            flags = usk.get("uflags", 0)
            if isinstance(flags, str):
                flags = int(flags, 0)
            if int(flags) & USK_EXTERN:
                out.ext_unix_sk = True
    out.file_locks = bool(_load(os.path.join(image_dir, LOCKS_IMG)))
    cpuinfo = os.path.join(image_dir, CPUINFO_IMG)
    if os.path.isfile(cpuinfo):
        with open(cpuinfo, "rb") as f:
            out.cpuinfo = f.read()
    return out
