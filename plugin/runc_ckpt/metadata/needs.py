"""What a restore will need from its host, recorded at checkpoint time (the manifest's "needs").

CRIU fails a cross-host restore late and obscurely when the target differs
in what the process depends on: the files it has open or mapped from the
base image, the CPU's features, the bind sources, the flags the images
require. Everything it will need is written down at checkpoint, so the
target can check it before anything is touched (metadata.hostcheck).
Archives and images without our record (podman's, `runc restore
--image-path` from any engine) get the same needs derived from the CRIU
images alone (from_images): no hashes, cpuinfo only when the images hold it.

Files that travel in the rootfs diff are not recorded: the restore brings
them along. A file's identity is CRIU's: its size, mode and ELF build-ID,
plus a sha256 where that is cheap (small files without a build-ID).
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from collections.abc import Callable, Mapping
from types import MappingProxyType

from runc_ckpt.base.record import Record
from runc_ckpt.rootfs import diff
from runc_ckpt.runtime import hostinfo, volumes
from runc_ckpt.runtime.criu import cpuinfo, imagereader

VERSION = 1
HASH_LIMIT = 16 << 20        # sha256 only files up to this size (without a build-ID): "where cheap"
FILE, DIRECTORY, OTHER = "file", "directory", "other"


class FileNeed(Record):
    """A file on the container's root mount that CRIU will open on restore."""

    path: str
    kind: str
    mode: int
    size: int | None = None
    build_id: str | None = None
    sha256: str | None = None


class BindNeed(Record):
    """A bind mount's source and what it was (directory, file, other) when checkpointed."""

    destination: str
    source: str
    kind: str


class Needs(Record):
    """Everything the pre-flight compares; `recorded` is False when derived from the images alone."""

    files: tuple[FileNeed, ...] = ()
    binds: tuple[BindNeed, ...] = ()
    tcp_established: bool = False
    file_locks: bool = False
    ext_unix_sk: bool = False
    cpuinfo: bytes | None = None
    cgroup_version: str | None = None
    cgroup_driver: str | None = None
    base_image: Mapping[str, str] = MappingProxyType({})    # name, id where known
    recorded: bool = True


def kind_of(mode: int) -> str:
    return DIRECTORY if stat.S_ISDIR(mode) else FILE if stat.S_ISREG(mode) else OTHER


def sha256(path: str) -> str | None:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


def binds_of(spec: dict) -> tuple[BindNeed, ...]:
    """The spec's bind mounts with the type of each source as it is on this host (missing: not listed)."""
    out = []
    for m in volumes.bind_entries(spec):
        source = str(m.get("source") or "")
        if not os.path.isabs(source):
            continue
        try:
            kind = kind_of(os.stat(source).st_mode)
        except OSError:
            continue
        out.append(BindNeed(os.path.normpath(str(m.get("destination", ""))), source, kind))
    return tuple(out)


def from_images(image_dir: str, spec: dict | None) -> Needs:
    """The needs the CRIU images state by themselves (no hashes; bind kinds unknown unless spec given)."""
    found = imagereader.needs(image_dir)       # from the restore's forked helper when one runs
    return Needs(files=tuple(FileNeed(f.path, kind_of(f.mode), f.mode, f.size, f.build_id) for f in found.files),
                 tcp_established=found.tcp_established, file_locks=found.file_locks,
                 ext_unix_sk=found.ext_unix_sk, cpuinfo=found.cpuinfo, recorded=False)


def _in_diff(source: diff.RootfsSource | None, rel: str) -> bool:
    """Whether the rootfs diff carries this path (it is in the overlay's upper dir)."""
    if source is None or source.overlay is None:
        return False
    if rel in diff.SKIP or rel.split("/", 1)[0] in diff.SKIP:
        return False
    return os.path.lexists(os.path.join(source.overlay.upper, rel))


def _where(source: diff.RootfsSource | None, rootfs: str, rel: str) -> str | None:
    """The file as the checkpointed container saw it: the root if still mounted, else the overlay's lowers."""
    here = os.path.join(rootfs, rel)
    if os.path.lexists(here):
        return here
    for lower in source.overlay.lowers if source is not None and source.overlay is not None else []:
        p = os.path.join(lower, rel)
        if os.path.lexists(p):
            return p
    return None


def record(image_dir: str, spec: dict, rootfs: str, source: diff.RootfsSource | None, criu: str,
           systemd_cgroup: bool, base_image: dict[str, str], include_rootfs: bool,
           dump_cpuinfo: Callable[[str], bytes | None] = cpuinfo.dump) -> Needs:
    """What this checkpoint's restore will need (call after the dump, images in image_dir).

    dump_cpuinfo: cpuinfo.dump, or a metadata.hostfacts.HostFacts' that ran it while runc dumped."""
    needs = from_images(image_dir, spec)
    files = []
    for f in needs.files:
        rel = f.path.lstrip("/")
        if not rel or (include_rootfs and _in_diff(source, rel)):
            continue
        digest = None
        if f.kind == FILE and f.build_id is None and f.size is not None and f.size <= HASH_LIMIT:
            where = _where(source, rootfs, rel)
            digest = sha256(where) if where else None
        files.append(FileNeed(f.path, f.kind, f.mode, f.size, f.build_id, digest))
    return needs._replace(files=tuple(files), binds=binds_of(spec), cpuinfo=needs.cpuinfo or dump_cpuinfo(criu),
                          cgroup_version=hostinfo.cgroups_version(),
                          cgroup_driver="systemd" if systemd_cgroup else "cgroupfs",
                          base_image={k: v for k, v in base_image.items() if v}, recorded=True)


def live(spec: dict, criu: str, systemd_cgroup: bool) -> Needs:
    """The needs known before the freeze (a migration's hello): CPU, bind sources, cgroups; no files or flags."""
    return Needs(binds=binds_of(spec), cpuinfo=cpuinfo.dump(criu), cgroup_version=hostinfo.cgroups_version(),
                 cgroup_driver="systemd" if systemd_cgroup else "cgroupfs")


def to_json(needs: Needs) -> dict:
    doc = needs._asdict()
    doc.update(files=[f._asdict() for f in needs.files], binds=[b._asdict() for b in needs.binds],
               base_image=dict(needs.base_image), version=VERSION)
    doc["cpuinfo"] = base64.b64encode(needs.cpuinfo).decode() if needs.cpuinfo else None
    doc.pop("recorded")
    return doc


def from_json(doc: object) -> Needs | None:
    """The manifest's needs; None when absent or of an unknown version (the images then speak alone)."""
    if not isinstance(doc, dict) or doc.get("version") != VERSION:
        return None
    try:
        raw = doc.get("cpuinfo")
        return Needs(files=tuple(FileNeed(**f) for f in doc.get("files") or []),
                     binds=tuple(BindNeed(**b) for b in doc.get("binds") or []),
                     tcp_established=bool(doc.get("tcp_established")), file_locks=bool(doc.get("file_locks")),
                     ext_unix_sk=bool(doc.get("ext_unix_sk")),
                     cpuinfo=base64.b64decode(raw) if isinstance(raw, str) and raw else None,
                     cgroup_version=doc.get("cgroup_version"), cgroup_driver=doc.get("cgroup_driver"),
                     base_image=dict(doc.get("base_image") or {}), recorded=True)
    except (TypeError, ValueError):
        return None
