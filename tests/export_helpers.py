"""Test helpers for the export writer: read an archive back, build export requests and trees."""

from __future__ import annotations

import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from runc_ckpt.archive import compression
from runc_ckpt.archive.export import ExportRequest


@dataclass
class Member:
    info: tarfile.TarInfo
    data: bytes


def read_members(path: str | Path) -> dict[str, Member]:
    """Every member of a (compressed) archive, in memory, in archive order."""
    with open(path, "rb") as raw:
        stream = compression.decompressing_reader(io.BufferedReader(raw))
        out: dict[str, Member] = {}
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for info in tar:
                f = tar.extractfile(info) if info.isreg() else None
                out[info.name] = Member(info, f.read() if f else b"")
    return out


def inner(member: Member) -> dict[str, Member]:
    """Members of an inner (uncompressed) tar."""
    out: dict[str, Member] = {}
    with tarfile.open(fileobj=io.BytesIO(member.data), mode="r:") as tar:
        for info in tar:
            f = tar.extractfile(info) if info.isreg() else None
            out[info.name] = Member(info, f.read() if f else b"")
    return out


def request(tmp: Path, rootfs: Path, spec: dict | None = None, **kw: object) -> ExportRequest:
    """A request with a small fake image dir (inventory.img, a parent symlink, stats-dump)."""
    images = tmp / "images"
    if not images.exists():
        images.mkdir()
        (images / "inventory.img").write_bytes(b"\x01\x02inventory")
        (images / "pages-1.img").write_bytes(os.urandom(5000))
        (images / "parent").symlink_to("../pre")
        (tmp / "stats-dump").write_bytes(b"\x40\x59\x10\x55\x06\x33\x09\x57\x00\x00\x00\x00")
    fields: dict = dict(
        archive=str(tmp / "out" / "ckpt.tar.zst"), compress="zstd", level=3, threads=0,
        image_dir=str(images), image_member="checkpoint", work_dir=str(tmp), bundle=str(tmp),
        spec=spec if spec is not None else {"ociVersion": "1.0.2", "mounts": []}, rootfs=str(rootfs),
        config_dump={"id": "c1", "name": "c1", "runtime": "runc-ckpt"}, include_rootfs=True,
        include_volumes=True, volume_roots=[], manifest_fields={"container": {"id": "c1"}})
    fields.update(kw)
    os.makedirs(os.path.dirname(str(fields["archive"])), exist_ok=True)
    return ExportRequest(**fields)  # type: ignore[arg-type]


def manifest_of(members: dict[str, Member]) -> dict:
    return json.loads(members["runc-ckpt.manifest.json"].data)


def capability_blob() -> bytes:
    """A valid VFS_CAP_REVISION_2 security.capability value granting CAP_NET_BIND_SERVICE (bit 10)."""
    import struct
    return struct.pack("<IIIII", 0x02000000 | 0x1, 1 << 10, 0, 0, 0)   # magic|effective, permitted, inh., hi
