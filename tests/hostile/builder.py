"""Build checkpoint archives member by member: benign ones, and the hostile corpus.

Everything is written with tarfile (and zstandard), in podman's layout plus
our manifest, so tests do not depend on the export code. CORPUS maps a case
name to a function that returns the archive's members (and, for cases about
links already in the rootfs, what to plant there first); each must be refused
by `restore --import` with nothing written outside the staging directory.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

CID = "hostile-test"
VOLUME = "vol1"


# ------------------------------------------------------------ inner tar entries


def f(name: str, data: bytes = b"x", mode: int = 0o644, uid: int = 0, gid: int = 0,
      xattrs: dict[str, bytes] | None = None) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.uid, info.gid, info.mtime = len(data), mode, uid, gid, 1_700_000_000
    if xattrs:
        info.pax_headers = {f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape") for k, v in xattrs.items()}
    return info, data


def d(name: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.mtime = tarfile.DIRTYPE, mode, uid, gid, 1_700_000_000
    return info, b""


def sym(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, b""


def hard(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.LNKTYPE, target
    return info, b""


def dev(name: str, major: int = 1, minor: int = 3, block: bool = False) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.BLKTYPE if block else tarfile.CHRTYPE
    info.devmajor, info.devminor, info.mode = major, minor, 0o666
    return info, b""


def tar_bytes(entries: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def members_end(entries: list[tuple[tarfile.TarInfo, bytes]]) -> int:
    """Offset just after the last member's data: where the end-of-archive blocks start."""
    buf = io.BytesIO()
    tar = tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT)
    for info, data in entries:
        tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.tell()


# ------------------------------------------------------------ whole archives


def spec(volume_source: str | None = None) -> dict:
    mounts = [{"destination": "/proc", "type": "proc", "source": "proc"}]
    if volume_source:
        mounts.append({"destination": "/data", "type": "bind", "source": volume_source, "options": ["rbind", "rw"]})
    return {"ociVersion": "1.0.2-dev", "root": {"path": "/elsewhere/merged"}, "process": {"args": ["sh"]},
            "mounts": mounts, "annotations": {}}


@dataclass
class Archive:
    """Members in order; the manifest (if wanted) is computed from them and written last."""

    members: list[tuple[tarfile.TarInfo, bytes]] = field(default_factory=list)
    manifest: bool = True
    manifest_override: dict = field(default_factory=dict)
    tamper: Callable[[list[tuple[tarfile.TarInfo, bytes]]], None] | None = None  # after the manifest is computed

    def add(self, name: str, data: bytes) -> None:
        self.members.append(f(name, data, mode=0o600))


def base(volume_source: str | None, rootfs_diff: bytes | None = None, deleted: list[str] | None = None,
         volume_tar: bytes | None = None, inventory: bool = True, root_mode: int | None = 0o755) -> Archive:
    """A small well-formed archive: fake CRIU images (restore never reaches CRIU in these tests)."""
    a = Archive()
    a.add("spec.dump", json.dumps(spec(volume_source)).encode())
    a.add("config.dump", json.dumps({"id": CID, "name": CID, "runtime": "runc",
                                     "createdTime": "2026-01-01T00:00:00Z"}).encode())
    a.add("network.status", b"null")
    if inventory:
        a.add("checkpoint/inventory.img", b"\x16\x31\x31\x58fake-inventory")
    a.add("checkpoint/pages-1.img", b"\0" * 8192)
    a.add("rootfs-diff.tar", rootfs_diff if rootfs_diff is not None else tar_bytes([f("newfile", b"new\n")]))
    a.add("deleted.files", json.dumps(deleted or []).encode())
    if volume_tar is not None:
        a.add(f"volumes/{VOLUME}.tar", volume_tar)
    a.manifest_override.setdefault("rootfs", {"kind": "overlay-diff", "root_mode": root_mode})
    return a


def write(archive: Archive, path: Path, compression: str = "zstd", cut: int | None = None) -> Path:
    members = list(archive.members)
    if archive.manifest:
        digests = {info.name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                   for info, data in members if info.isreg()}
        doc = {"format": "runc-ckpt", "format_version": 1, "created": "2026-01-01T00:00:00Z",
               "versions": {"runc-ckpt": "test", "runc": "1.1.5", "criu": "4.2.1"},
               "container": {"id": CID, "name": CID}, "options": {}, "bind_mounts": []}
        doc.update(archive.manifest_override)
        doc["members"] = digests
        members.append(f("runc-ckpt.manifest.json", json.dumps(doc).encode(), mode=0o600))
    if archive.tamper:
        archive.tamper(members)
    raw = tar_bytes(members)
    if compression == "zstd":
        raw = zstandard.ZstdCompressor(level=3).compress(raw)
    elif compression == "gzip":
        import gzip
        raw = gzip.compress(raw)
    if cut is not None:
        raw = raw[:cut]
    path.write_bytes(raw)
    os.chmod(path, 0o600)
    return path


# ------------------------------------------------------------ the hostile corpus


@dataclass
class Case:
    """One hostile archive; plant(rootfs, outside) prepares the target before restore."""

    archive: Archive
    plant: Callable[[Path, Path], None] | None = None
    compression: str = "zstd"
    cut: int | None = None
    expect: str = ""  # a fragment of the error message


def _swap(name: str, data: bytes) -> Callable[[list], None]:
    def tamper(members: list) -> None:
        for i, (info, _) in enumerate(members):
            if info.name == name:
                members[i] = f(name, data, mode=0o600)
    return tamper


def corpus(outside: Path, volume_source: str) -> dict[str, Case]:
    """Every hostile case, for a test whose victim directory is `outside`."""
    o = str(outside)
    v = volume_source
    cases: dict[str, Case] = {}

    def outer(*extra: tuple[tarfile.TarInfo, bytes]) -> Archive:
        a = base(v)
        a.members[3:3] = list(extra)
        return a

    cases["outer-traversal"] = Case(outer(f("../escape", b"pwned")), expect="'..'")
    cases["outer-absolute"] = Case(outer(f(f"{o}/escape", b"pwned")), expect="absolute")
    cases["outer-dotdot-in-checkpoint"] = Case(outer(f("checkpoint/../../escape", b"pwned")), expect="'..'")
    cases["outer-symlink"] = Case(outer(sym("checkpoint/evil", o)), expect="not a regular file")
    cases["outer-bad-parent-link"] = Case(outer(sym("checkpoint/parent", o)), expect="pre-checkpoint")
    cases["outer-volume-name-traversal"] = Case(outer(f("volumes/../../escape.tar", b"")), expect="'..'")
    cases["rootfs-traversal"] = Case(base(v, rootfs_diff=tar_bytes([f("../../escape", b"pwned")])), expect="'..'")
    cases["rootfs-dotdot-middle"] = Case(base(v, rootfs_diff=tar_bytes([f("etc/../../escape", b"pwned")])),
                                         expect="'..'")
    cases["rootfs-absolute"] = Case(base(v, rootfs_diff=tar_bytes([f(f"{o}/escape", b"pwned")])),
                                    expect="absolute")
    cases["rootfs-planted-symlink-absolute"] = Case(
        base(v, rootfs_diff=tar_bytes([sym("link", o), f("link/escape", b"pwned")])), expect="symlink")
    cases["rootfs-planted-symlink-relative"] = Case(
        base(v, rootfs_diff=tar_bytes([sym("up", "../../../../../../.."), f(f"up{o}/escape", b"pwned")])),
        expect="symlink")
    cases["rootfs-planted-symlink-dir-then-file"] = Case(
        base(v, rootfs_diff=tar_bytes([d("a"), sym("a/b", o), f("a/b/escape", b"pwned")])), expect="symlink")

    def plant_link(rootfs: Path, outside_dir: Path) -> None:
        (rootfs / "hostlink").symlink_to(outside_dir)

    cases["rootfs-preexisting-symlink"] = Case(
        base(v, rootfs_diff=tar_bytes([f("hostlink/escape", b"pwned")])), plant=plant_link, expect="symlink")
    cases["rootfs-preexisting-symlink-deep"] = Case(
        base(v, rootfs_diff=tar_bytes([f("hostlink/sub/escape", b"pwned")])), plant=plant_link, expect="symlink")
    cases["hardlink-traversal"] = Case(
        base(v, rootfs_diff=tar_bytes([hard("hl", f"../../../../../../..{o}/secret")])), expect="'..'")
    cases["hardlink-absolute"] = Case(base(v, rootfs_diff=tar_bytes([hard("hl", f"{o}/secret")])),
                                      expect="absolute")
    cases["hardlink-through-planted-symlink"] = Case(
        base(v, rootfs_diff=tar_bytes([sym("s", o), hard("hl", "s/secret")])), expect="symlink")
    cases["hardlink-not-in-archive"] = Case(base(v, rootfs_diff=tar_bytes([hard("hl", "etc/passwd")])),
                                            expect="hardlink target")
    cases["deleted-traversal"] = Case(base(v, deleted=[f"../../../../../../..{o}/victim"]), expect="'..'")
    cases["deleted-through-preexisting-symlink"] = Case(base(v, deleted=["/hostlink/victim"]), plant=plant_link,
                                                        expect="symlink")
    cases["deleted-through-planted-symlink"] = Case(
        base(v, rootfs_diff=tar_bytes([sym("pl", o)]), deleted=["/pl/victim"]), expect="symlink")
    cases["volume-device-node"] = Case(base(v, volume_tar=tar_bytes([dev("null")])), expect="device")
    cases["volume-block-device"] = Case(base(v, volume_tar=tar_bytes([dev("disk", 8, 0, block=True)])),
                                        expect="device")
    cases["volume-traversal"] = Case(base(v, volume_tar=tar_bytes([f("../../escape", b"pwned")])), expect="'..'")
    cases["volume-planted-symlink"] = Case(base(v, volume_tar=tar_bytes([sym("l", o), f("l/escape", b"x")])),
                                           expect="symlink")
    cases["oversized-member"] = Case(outer(), expect="oversized")
    cases["oversized-member"].archive.members[0] = f("spec.dump", b" " * (17 << 20), mode=0o600)
    big = base(v, rootfs_diff=tar_bytes([f("big", os.urandom(256 << 10))]))
    cases["truncated-member"] = Case(big, compression="none", cut=200_000, expect="truncated")
    boundary = base(v)
    boundary.manifest = False  # podman-like: only the tar structure can tell it was cut
    cases["truncated-at-member-boundary"] = Case(boundary, compression="none", cut=members_end(boundary.members),
                                                 expect="truncated")
    cases["rootfs-nested-too-deep"] = Case(base(v, rootfs_diff=tar_bytes([f("a/" * 300 + "x", b"deep")])),
                                           expect="deep")
    twice = base(v, rootfs_diff=tar_bytes([f("first", b"1")]))
    twice.members.append(f("rootfs-diff.tar", tar_bytes([f("second", b"2")]), mode=0o600))
    twice.manifest = False
    cases["duplicate-member"] = Case(twice, expect="appears twice")
    cases["manifest-mismatch"] = Case(base(v), expect="manifest")
    cases["manifest-mismatch"].archive.tamper = _swap("rootfs-diff.tar", tar_bytes([f("newfile", b"evil\n")]))
    cases["manifest-unlisted-member"] = Case(base(v), expect="manifest")

    def add_unlisted(members: list) -> None:
        members.insert(2, f("ctr.log", b"sneaked in", mode=0o600))
    cases["manifest-unlisted-member"].archive.tamper = add_unlisted
    # The archived spec becomes the runtime spec when the bundle has no config.json: untrusted.
    def hostile_spec(change: Callable[[dict], None], volume: str = v, volume_tar: bytes | None = None) -> Archive:
        a = base(volume, volume_tar=volume_tar)
        sp = spec(volume)
        change(sp)
        a.members[0] = f("spec.dump", json.dumps(sp).encode(), mode=0o600)
        return a

    cases["spec-host-bind"] = Case(hostile_spec(lambda sp: sp["mounts"].append(
        {"destination": "/host", "type": "bind", "source": o, "options": ["rbind", "rw"]})),
        expect=f"bind mount of host path {o}")
    cases["spec-hooks"] = Case(hostile_spec(lambda sp: sp.update(hooks={"createRuntime": [{"path": f"{o}/x"}]})),
                               expect="hooks.createRuntime would run host programs")
    cases["spec-devices"] = Case(hostile_spec(lambda sp: sp.update(linux={"devices": [
        {"path": "/dev/sda", "type": "b", "major": 8, "minor": 0}]})), expect="linux.devices")
    cases["spec-host-netns"] = Case(hostile_spec(lambda sp: sp.update(linux={"namespaces": [
        {"type": "network", "path": "/proc/self/ns/net"}]})), expect="joins the host's network namespace")
    cases["spec-allow-all-devices"] = Case(hostile_spec(lambda sp: sp.update(linux={"resources": {"devices": [
        {"allow": True, "access": "rwm"}]}})), expect="allows every device")
    cases["spec-root-with-added-caps"] = Case(hostile_spec(lambda sp: sp["process"].update(
        capabilities={"bounding": ["CAP_SYS_ADMIN"], "effective": ["CAP_SYS_ADMIN"]})),
        expect="added capabilities CAP_SYS_ADMIN")
    outside_volume = hostile_spec(lambda sp: None, volume=f"{o}/made/_data", volume_tar=tar_bytes([f("v", b"pwned")]))
    outside_volume.members[1] = f("config.dump", json.dumps({  # podman names its volumes here
        "id": CID, "name": CID, "namedVolumes": [{"volumeName": VOLUME, "dest": "/data"}]}).encode(), mode=0o600)
    cases["spec-volume-outside-roots"] = Case(outside_volume, expect="outside volume_roots")
    return cases
