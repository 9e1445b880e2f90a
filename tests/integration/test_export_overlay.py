"""write_archive() on real overlay roots, real CRIU images, a really full disk; read back by python and GNU tar."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from runc_ckpt.archive import export, tarstage
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.runtime.criu import stats
from tests.conftest import require_tool
from tests.export_helpers import capability_blob, inner, manifest_of, read_members, request
from tests.integration.conftest import mount_overlay, mounted, runc, wait_for

LIST_CMD = {"zstd": "zstd -dc {f} | tar -tvf -", "gzip": "tar -tzvf {f}", "none": "tar -tvf {f}"}


def change_rootfs(root: Path) -> None:
    """What a container might do: new, setuid, capability, hardlinked and removed files."""
    (root / "new-file").write_text("created in the container\n")
    os.chown(root / "new-file", 1000, 1001)
    os.chmod(root / "new-file", 0o640)
    (root / "suid").write_bytes(b"#!/bin/sh\n")
    os.chmod(root / "suid", 0o4755)
    (root / "capfile").write_bytes(b"ping")
    os.setxattr(root / "capfile", "security.capability", capability_blob())
    os.setxattr(root / "capfile", "user.note", b"kept")
    (root / "etc" / "hl-a").write_text("two names\n")
    os.link(root / "etc" / "hl-a", root / "etc" / "hl-b")
    (root / "sym").symlink_to("/new-file")
    (root / "etc" / "lower-file").unlink()
    (root / "run" / "skipped").write_text("x")
    (root / "etc" / "hosts").write_text("127.0.0.1 skipped\n")
    (root / "data" / "sub").mkdir()


def staged_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every tree takes GNU tar's stage (archive.tarstage), however small; returns a list its runs append to."""
    monkeypatch.setattr(tarstage, "MIN_ENTRIES", 0)
    runs: list[int] = []
    real = tarstage.run
    monkeypatch.setattr(tarstage, "run", lambda *a: runs.append(1) or real(*a))
    return runs


@pytest.mark.parametrize("algo", ["zstd", "zstd-tar", "gzip", "none"])
def test_overlay_diff_archive(make_bundle, tmp_path, algo, monkeypatch):
    """zstd: a tree this small has the Python writer; zstd-tar: GNU tar's stage writes the same diff."""
    staged = algo == "zstd-tar"
    runs = staged_runs(monkeypatch) if staged else []
    algo = algo.removesuffix("-tar")
    tar = require_tool("tar")
    require_tool("zstd")
    b = make_bundle(volumes={"vol1": "/vol1"})
    change_rootfs(b.rootfs)
    (b.volumes["vol1"] / "db").write_bytes(b"volume data")
    os.chmod(b.rootfs, 0o555)
    req = request(tmp_path, b.rootfs, spec=b.config(), compress=algo,
                  volume_roots=[str(tmp_path / "volumes")])
    result = export.write_archive(req)

    path = Path(result.archive)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(os.listdir(path.parent)) == [path.name]
    m = read_members(path)
    assert list(m)[-1] == "runc-ckpt.manifest.json"
    diff = inner(m["rootfs-diff.tar"])
    new = diff["new-file"]
    assert new.data == b"created in the container\n"
    assert (new.info.uid, new.info.gid, new.info.mode) == (1000, 1001, 0o640)
    assert diff["suid"].info.mode == 0o4755
    cap = diff["capfile"].info.pax_headers
    assert cap["SCHILY.xattr.security.capability"].encode("utf-8", "surrogateescape") == capability_blob()
    assert cap["SCHILY.xattr.user.note"] == "kept"
    assert not any(k.startswith("SCHILY.xattr.trusted.overlay") for i in diff.values() for k in i.info.pax_headers)
    links = [diff["etc/hl-a"].info, diff["etc/hl-b"].info]
    assert sorted(i.type for i in links) == [tarfile.REGTYPE, tarfile.LNKTYPE]
    assert diff["sym"].info.issym() and diff["sym"].info.linkname == "/new-file"
    assert "data/sub" in diff and "bin/busybox" not in diff            # only what changed
    assert not any(n == "run" or n.startswith(("run/", "dev/")) or n == "etc/hosts" for n in diff)
    assert "/etc/lower-file" in json.loads(m["deleted.files"].data)
    assert inner(m["volumes/vol1.tar"])["db"].data == b"volume data"

    doc = manifest_of(m)
    assert doc["rootfs"] == {"kind": "overlay-diff", "root_mode": 0o555}
    assert {"destination": "/vol1", "source": str(b.volumes["vol1"]), "archived_as": "vol1"} in doc["bind_mounts"]
    for name, want in doc["members"].items():
        assert want == {"size": len(m[name].data), "sha256": hashlib.sha256(m[name].data).hexdigest()}
    assert result.rootfs_kind == "overlay-diff" and result.volumes == ["vol1"]
    assert runs == ([1] if staged else [])

    # GNU tar reads the outer stream, and restores owners, modes and xattrs from the inner one.
    listing = subprocess.run(LIST_CMD[algo].format(f=path), shell=True, capture_output=True, text=True,
                             check=True).stdout
    assert "rootfs-diff.tar" in listing and "runc-ckpt.manifest.json" in listing
    out = tmp_path / "gnu"
    out.mkdir()
    subprocess.run([tar, "--xattrs", "--xattrs-include=*", "-xpf", "-", "-C", str(out)],
                   input=m["rootfs-diff.tar"].data, check=True)
    assert os.getxattr(out / "capfile", "security.capability") == capability_blob()
    assert stat.S_IMODE(os.lstat(out / "suid").st_mode) == 0o4755
    assert os.lstat(out / "new-file").st_uid == 1000
    assert os.stat(out / "etc" / "hl-a").st_ino == os.stat(out / "etc" / "hl-b").st_ino


@pytest.mark.parametrize("staged", [False, True], ids=["python", "tar"])
def test_opaque_directory_on_real_overlay(tmp_path, monkeypatch, staged):
    runs = staged_runs(monkeypatch) if staged else []
    lower, upper, work, merged = (tmp_path / d for d in ("lower", "upper", "work", "merged"))
    for d in (lower / "opt" / "app" / "sub", upper, work, merged):
        d.mkdir(parents=True)
    (lower / "opt" / "app" / "old").write_text("old")
    (lower / "opt" / "app" / "sub" / "stale").write_text("stale")
    (lower / "opt" / "keep").write_text("keep")
    mount_overlay(lower, upper, work, merged)
    try:
        subprocess.run(["rm", "-rf", str(merged / "opt" / "app")], check=True)
        (merged / "opt" / "app" / "sub").mkdir(parents=True)
        (merged / "opt" / "app" / "new").write_text("new")
        (merged / "opt" / "app" / "sub" / "fresh").write_text("fresh")
        assert os.getxattr(upper / "opt" / "app", "trusted.overlay.opaque") == b"y"   # the case under test
        result = export.write_archive(request(tmp_path, merged))
        m = read_members(result.archive)
        deleted = json.loads(m["deleted.files"].data)
        assert deleted == ["/opt/app/old", "/opt/app/sub/stale"]
        diff = inner(m["rootfs-diff.tar"])
        assert diff["opt/app/new"].data == b"new" and diff["opt/app/sub/fresh"].data == b"fresh"
        assert "opt/keep" not in diff
        assert runs == ([1] if staged else [])
    finally:
        subprocess.run(["umount", "-l", str(merged)], check=False)


def test_real_criu_images(make_bundle, containers, tmp_path):
    b = make_bundle()
    cid = containers.run(b)
    wait_for(lambda: b.counter() > 3, what="counter to start")
    images, work = tmp_path / "images", tmp_path / "work"
    runc(containers.root, "checkpoint", "--image-path", str(images), "--work-path", str(work), cid)
    req = request(tmp_path, b.rootfs, spec=b.config(), image_dir=str(images), work_dir=str(work))
    result = export.write_archive(req)
    m = read_members(result.archive)
    on_disk = sorted(p.name for p in images.iterdir() if p.is_file())
    assert "inventory.img" in on_disk
    assert sorted(n.split("/", 1)[1] for n in m if n.startswith("checkpoint/")) == on_disk
    for name in on_disk:
        assert m[f"checkpoint/{name}"].data == (images / name).read_bytes()
    assert m["stats-dump"].data == (work / "stats-dump").read_bytes()
    assert stats.decode(m["stats-dump"].data)["dump"]["pages_written"] > 0
    assert "counter" in inner(m["rootfs-diff.tar"])


@pytest.mark.parametrize("algo", ["zstd", "gzip", "none"])
@pytest.mark.parametrize("fs_size", ["16k", "1m"])   # 16k: the kernel takes part of a write, then none
def test_really_full_disk_leaves_nothing(tmp_path, algo, fs_size):
    root = tmp_path / "rootfs"
    root.mkdir()
    (root / "big").write_bytes(os.urandom(3 << 20))
    target = tmp_path / "small"
    target.mkdir()
    with mounted("-t", "tmpfs", "-o", f"size={fs_size}", "tmpfs", str(target)):
        req = request(tmp_path, root, compress=algo, archive=str(target / "a.tar"))
        with pytest.raises(RuncCkptError, match="No space left on device"):
            export.write_archive(req)
        assert os.listdir(target) == []


def test_read_only_target_directory(tmp_path):
    root = tmp_path / "rootfs"
    root.mkdir()
    target = tmp_path / "ro"
    target.mkdir()
    with mounted("-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(target)):
        req = request(tmp_path, root, archive=str(target / "a.tar.zst"))
        with pytest.raises(RuncCkptError, match="cannot write in .*Read-only file system"):
            export.write_archive(req)


def test_inner_tar_is_extractable_by_python(make_bundle, tmp_path):
    b = make_bundle()
    change_rootfs(b.rootfs)
    m = read_members(export.write_archive(request(tmp_path, b.rootfs)).archive)
    out = tmp_path / "py"
    with tarfile.open(fileobj=io.BytesIO(m["rootfs-diff.tar"].data)) as t:
        t.extractall(out, numeric_owner=True)
    assert (out / "new-file").read_text() == "created in the container\n"
    assert stat.S_IMODE(os.lstat(out / "suid").st_mode) == 0o4755


@pytest.mark.parametrize("options", ["redirect_dir=on,metacopy=on", "redirect_dir=on"], ids=["both", "redirect"])
def test_redirected_dir_and_metacopy_file(tmp_path, monkeypatch, options):
    """redirect_dir/metacopy overlays: the upper dir/file alone lacks the data; the archive must not.
    GNU tar's stage cannot render them: the Python writer does, however big the tree."""
    runs = staged_runs(monkeypatch)
    lower, upper, work, merged = (tmp_path / d for d in ("lower", "upper", "work", "merged"))
    for d in (lower / "srv" / "old-name", upper, work, merged):
        d.mkdir(parents=True)
    (lower / "srv" / "old-name" / "payload").write_text("from lower\n")
    (lower / "meta").write_bytes(b"M" * 10000)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={lower},upperdir={upper},workdir={work},{options}",
                    str(merged)], check=True)
    try:
        os.rename(merged / "srv" / "old-name", merged / "srv" / "new-name")
        os.chown(merged / "meta", 4321, 4321)                    # a metadata-only copy-up
        assert "trusted.overlay.redirect" in os.listxattr(upper / "srv" / "new-name")
        assert ("trusted.overlay.metacopy" in os.listxattr(upper / "meta")) == ("metacopy" in options)
        m = read_members(export.write_archive(request(tmp_path, merged)).archive)
        diff = inner(m["rootfs-diff.tar"])
        assert diff["srv/new-name/payload"].data == b"from lower\n"
        assert diff["meta"].data == b"M" * 10000 and diff["meta"].info.uid == 4321
        assert runs == []
        assert "/srv/old-name" in json.loads(m["deleted.files"].data)
    finally:
        subprocess.run(["umount", "-l", str(merged)], check=False)
