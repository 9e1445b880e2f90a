"""`image build` of a CRI-O/kubelet checkpoint archive, then restore from the image.

The archive is made by hand the way CRI-O writes /var/lib/kubelet/checkpoints/*.tar
(internal/lib/checkpoint.go): uncompressed, CRIU images under checkpoint/,
dump.log and stats-dump from the work dir, CRI-O's config.dump and spec.dump,
bind.mounts, the container log under the name of its annotation, and the
rootfs diff. No volumes: CRI-O leaves bind mounts on the host.
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile

from tests.integration.conftest import mount_overlay, runc, wait_for
from tests.integration.test_restore_import_real import SCRIPT, _tree_tar

NAME = "web"
LOG_MEMBER = "io.kubernetes.cri-o.LogPath"


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o600
    tar.addfile(info, io.BytesIO(data))


def test_image_build_of_a_crio_archive_restores(make_bundle, containers, busybox_lower, tmp_path, runc_ckpt_bin):
    b = make_bundle(args=["sh", "-c", SCRIPT])
    hostdir = tmp_path / "hostdir"
    hostdir.mkdir()
    spec = b.config()
    spec["mounts"].append({"destination": "/hostdir", "type": "bind", "source": str(hostdir),
                           "options": ["rbind", "rw"]})
    spec["annotations"] = {"io.container.manager": "cri-o", "io.kubernetes.cri-o.Name": NAME,
                           "io.kubernetes.cri-o.ImageName": "quay.io/example/web:1",
                           LOG_MEMBER: str(tmp_path / "web.log"),
                           "io.kubernetes.cri-o.Annotations": json.dumps({"io.kubernetes.container.hash": "1"})}
    b.write_config(spec)
    cid = containers.run(b)
    wait_for(lambda: b.counter() > 3, what="counter to start")
    images, work = tmp_path / "images", tmp_path / "work"
    runc(containers.root, "checkpoint", "--image-path", str(images), "--work-path", str(work), cid)
    before = b.counter()
    diff, deleted = _tree_tar(b.upper, skip_whiteouts=True)
    archive = tmp_path / "checkpoint-web_default-web-2026-12-02T01:00:00Z.tar"
    with tarfile.open(archive, "w") as tar:
        for img in sorted(images.iterdir()):
            _add(tar, f"checkpoint/{img.name}", img.read_bytes())
        for name in ("dump.log", "stats-dump"):
            _add(tar, name, (work / name).read_bytes())
        _add(tar, "config.dump", json.dumps({"id": cid, "name": NAME, "rootfsImageName": "quay.io/example/web:1",
                                             "rootfsImageRef": "f" * 64, "runtime": "runc",
                                             "createdTime": "2026-12-02T01:00:00Z"}).encode())
        _add(tar, "spec.dump", json.dumps(spec).encode())
        _add(tar, "bind.mounts", json.dumps([{"source": str(hostdir), "destination": "/hostdir",
                                              "fileType": "directory", "permissions": 493}]).encode())
        _add(tar, LOG_MEMBER, b'2026-12-02T01:00:00Z stdout F hello\n')
        _add(tar, "rootfs-diff.tar", diff)
        _add(tar, "deleted.files", json.dumps(deleted).encode())

    layout = tmp_path / "layout"
    built = subprocess.run([runc_ckpt_bin, "image", "build", str(archive), f"oci:{layout}:ck"], capture_output=True,
                           text=True, check=False)
    assert built.returncode == 0, built.stderr
    info = subprocess.run([runc_ckpt_bin, "inspect", "--format", "json", f"oci:{layout}:ck"], capture_output=True,
                          text=True, check=False)
    assert info.returncode == 0, info.stderr
    doc = json.loads(info.stdout)
    assert doc["engine"] == "CRI-O" and doc["name"] == NAME
    assert doc["restorable_by"] == ["CRI-O", "runc-ckpt"]
    ann = doc["image"]["annotations"]
    assert ann["io.kubernetes.cri-o.annotations.checkpoint.name"] == NAME
    assert ann["org.criu.checkpoint.engine.name"] == "CRI-O"
    assert ann["io.podman.annotations.checkpoint.rootfsImageName"] == "quay.io/example/web:1"
    log = subprocess.run([runc_ckpt_bin, "inspect", "--log", f"oci:{layout}:ck"], capture_output=True, text=True,
                         check=False)
    assert log.stdout == (work / "dump.log").read_text()

    # The restoring host: the base image only.
    subprocess.run(["umount", str(b.rootfs)], check=True)
    for d in (b.upper, b.work):
        subprocess.run(["rm", "-rf", str(d)], check=True)
        d.mkdir()
    mount_overlay(busybox_lower, b.upper, b.work, b.rootfs)
    out = subprocess.run([runc_ckpt_bin, "--root", str(containers.root), "restore", "--import", f"oci:{layout}:ck",
                          "--bundle", str(b.path), "-d"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert containers.status(cid) == "running"
    wait_for(lambda: b.counter() > before + 2, what="counter to continue after restore")
    assert (b.rootfs / "newfile").read_text() == "new\n"
    assert (b.rootfs / "data" / "sub" / "v").read_text() == "kept\n"
