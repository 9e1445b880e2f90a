"""restore --import on the real stack: runc + CRIU, an overlay rootfs, a named volume.

The archive is built here from a real `runc checkpoint` (tarfile + zstandard,
podman's layout plus our manifest), so this test does not depend on the
export code; test_restore_roundtrip.py does the same through
`runc-ckpt checkpoint --export`. The target then looks like a new host: the
overlay's upper layer is thrown away and the volume emptied.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import zstandard

from tests.integration.conftest import COUNTER, mount_overlay, runc, wait_for

SCRIPT = ("echo new > /newfile; rm /etc/lower-file; mkdir -p /data/sub; echo kept > /data/sub/v; "
          + COUNTER)


def _add(tar: tarfile.TarFile, digests: dict, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o600
    tar.addfile(info, io.BytesIO(data))
    digests[name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _tree_tar(root: Path, skip_whiteouts: bool) -> tuple[bytes, list[str]]:
    """Tar of a directory (relative names); overlay whiteouts become deleted paths."""
    buf = io.BytesIO()
    deleted = []
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                p = Path(dirpath) / name
                rel = str(p.relative_to(root))
                st = p.lstat()
                if skip_whiteouts and stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    deleted.append("/" + rel)
                    continue
                tar.add(str(p), arcname=rel, recursive=False)
    return buf.getvalue(), deleted


def build_archive(path: Path, images: Path, bundle, cid: str) -> None:
    diff, deleted = _tree_tar(bundle.upper, skip_whiteouts=True)
    digests: dict = {}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, digests, "spec.dump", bundle.config_path.read_bytes())
        _add(tar, digests, "config.dump", json.dumps({"id": cid, "name": cid, "runtime": "runc-ckpt"}).encode())
        for img in sorted(images.iterdir()):
            _add(tar, digests, f"checkpoint/{img.name}", img.read_bytes())
        _add(tar, digests, "rootfs-diff.tar", diff)
        _add(tar, digests, "deleted.files", json.dumps(deleted).encode())
        for name, directory in bundle.volumes.items():
            _add(tar, digests, f"volumes/{name}.tar", _tree_tar(directory, skip_whiteouts=False)[0])
        manifest = {"format": "runc-ckpt", "format_version": 1, "container": {"id": cid, "name": cid},
                    "rootfs": {"kind": "overlay-diff", "root_mode": os.stat(bundle.rootfs).st_mode & 0o7777},
                    "bind_mounts": [{"destination": "/data", "source": str(d), "archived_as": n}
                                    for n, d in bundle.volumes.items()],
                    "members": digests}
        info = tarfile.TarInfo("runc-ckpt.manifest.json")
        data = json.dumps(manifest).encode()
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    path.write_bytes(zstandard.ZstdCompressor().compress(raw.getvalue()))


def as_new_host(bundle, busybox_lower: Path) -> None:
    """Throw the container's writes away: empty upper/work, remount; empty the volume."""
    subprocess.run(["umount", str(bundle.rootfs)], check=True)
    bundle.mounted = False
    for d in (bundle.upper, bundle.work):
        subprocess.run(["rm", "-rf", str(d)], check=True)
        d.mkdir()
    mount_overlay(busybox_lower, bundle.upper, bundle.work, bundle.rootfs)
    bundle.mounted = True
    for p in bundle.volumes["vol1"].iterdir():
        subprocess.run(["rm", "-rf", str(p)], check=True)


def restore_env(tmp_path: Path) -> dict:
    cfg = tmp_path / "runc-ckpt.yaml"
    cfg.write_text(f"volume_roots: [{tmp_path / 'volumes'}]\nstate_dir: {tmp_path / 'state'}\n")
    return dict(os.environ, RUNC_CKPT_CONFIG=str(cfg))


def test_restore_import_brings_back_process_diff_and_volume(make_bundle, containers, busybox_lower, tmp_path,
                                                          runc_ckpt_bin):
    b = make_bundle(args=["sh", "-c", SCRIPT], volumes={"vol1": "/data"})
    cid = containers.run(b)
    wait_for(lambda: b.counter() > 3, what="counter to start")
    images = tmp_path / "images"
    runc(containers.root, "checkpoint", "--image-path", str(images), cid)
    before = b.counter()
    archive = tmp_path / "ckpt.tar.zst"
    build_archive(archive, images, b, cid)
    as_new_host(b, busybox_lower)
    assert not (b.rootfs / "newfile").exists() and (b.rootfs / "etc" / "lower-file").exists()
    assert list(b.volumes["vol1"].iterdir()) == []

    out = subprocess.run([runc_ckpt_bin, "--root", str(containers.root), "restore", "--import", str(archive),
                          "--bundle", str(b.path), "-d", cid], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, env=restore_env(tmp_path), timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert containers.status(cid) == "running"
    wait_for(lambda: b.counter() > before + 2, what="counter to continue after restore")
    assert (b.rootfs / "newfile").read_text() == "new\n"
    assert not (b.rootfs / "etc" / "lower-file").exists()
    assert (b.volumes["vol1"] / "sub" / "v").read_text() == "kept\n"
    assert not [n for n in os.listdir(b.path) if n.startswith(".runc-ckpt")]
    assert not [n for n in os.listdir(b.rootfs) if n.startswith(".runc-ckpt")]


def test_restore_import_print_stats_and_tcp_close(make_bundle, containers, busybox_lower, tmp_path,
                                                  runc_ckpt_bin):
    """--tcp-close reaches CRIU (its restore.log names our config file); --print-stats has CRIU's numbers."""
    b = make_bundle()
    cid = containers.run(b)
    wait_for(lambda: b.counter() > 3, what="counter to start")
    images = tmp_path / "images"
    runc(containers.root, "checkpoint", "--image-path", str(images), cid)
    archive = tmp_path / "ckpt.tar.zst"
    build_archive(archive, images, b, cid)
    out = subprocess.run([runc_ckpt_bin, "--root", str(containers.root), "restore", "--import", str(archive),
                          "--bundle", str(b.path), "-d", "--tcp-close", "--print-stats", "--keep", cid],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, env=restore_env(tmp_path),
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert containers.status(cid) == "running"
    stats = json.loads(out.stdout)
    crit = stats["container_statistics"][0]["criu_statistics"]
    assert crit["pages_restored"] > 0 and crit["restore_time"] > 0
    assert stats["container_statistics"][0]["runtime_restore_duration"] > 0
    log = (tmp_path / "state" / cid / "restore-work" / "restore.log").read_text()
    assert "Parsing config file /run/runc-ckpt/criu-" in log


MANY = ("mkdir /many; i=0; while [ $i -lt 600 ]; do echo $i > /many/f$i; i=$((i+1)); done; "
        "chown 5:6 /many/f7; chmod 4755 /many/f8; ln -s f1 /many/link; ln /many/f2 /many/hard; "
        "mkdir -m 0710 /many/sub; echo s > /many/sub/s; " + COUNTER)


def _files(top: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            body = os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else None
            out[str(p.relative_to(top))] = (st.st_mode, st.st_uid, st.st_gid, int(st.st_mtime), st.st_nlink, body)
    return out


def test_restore_import_of_a_many_file_diff_keeps_every_file(make_bundle, containers, busybox_lower, tmp_path,
                                                             runc_ckpt_bin):
    """600 files: past safeextract.FORK_AFTER, so a forked helper makes most of them; owners, setuid,
    links and directory modes come back as written."""
    b = make_bundle(args=["sh", "-c", MANY], volumes={"vol1": "/data"})
    cid = containers.run(b)
    wait_for(lambda: b.counter() > 3, what="counter to start")
    images = tmp_path / "images"
    runc(containers.root, "checkpoint", "--image-path", str(images), cid)
    written = _files(b.upper / "many")
    assert len(written) == 604 and written["f8"][0] & 0o7777 == 0o4755 and written["hard"][4] == 2
    archive = tmp_path / "ckpt.tar.zst"
    build_archive(archive, images, b, cid)
    as_new_host(b, busybox_lower)

    out = subprocess.run([runc_ckpt_bin, "--root", str(containers.root), "restore", "--import", str(archive),
                          "--bundle", str(b.path), "-d", cid], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, env=restore_env(tmp_path), timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert containers.status(cid) == "running"
    assert _files(b.rootfs / "many") == written
