"""The full round trip: `runc-ckpt checkpoint --export`, a new host's rootfs, `runc-ckpt restore --import`."""

from __future__ import annotations

import json
import os
import subprocess

from tests.integration.conftest import wait_for
from tests.integration.test_restore_import_real import SCRIPT, as_new_host, restore_env


def test_export_then_import_roundtrip(make_bundle, containers, busybox_lower, tmp_path, runc_ckpt_bin):
    b = make_bundle(args=["sh", "-c", SCRIPT], volumes={"vol1": "/data"})
    cid = containers.run(b)
    wait_for(lambda: b.counter() > 3, what="counter to start")
    env = restore_env(tmp_path)
    archive = tmp_path / "export.tar.zst"
    out = subprocess.run([runc_ckpt_bin, "--root", str(containers.root), "checkpoint", "--export", str(archive),
                          cid], stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert containers.status(cid) is None
    before = b.counter()
    as_new_host(b, busybox_lower)

    info = subprocess.run([runc_ckpt_bin, "inspect", "--format", "json", str(archive)], capture_output=True,
                          text=True, check=False)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["engine"] == "runc-ckpt"
    assert json.loads(info.stdout)["verified"] is True

    out = subprocess.run([runc_ckpt_bin, "--root", str(containers.root), "restore", "--import", str(archive),
                          "--bundle", str(b.path), "-d"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, env=env, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert containers.status(cid) == "running"  # the ID came from the archive
    wait_for(lambda: b.counter() > before + 2, what="counter to continue after restore")
    assert (b.rootfs / "newfile").read_text() == "new\n"
    assert not (b.rootfs / "etc" / "lower-file").exists()
    assert (b.volumes["vol1"] / "sub" / "v").read_text() == "kept\n"
    assert not [n for n in os.listdir(b.path) if n.startswith(".runc-ckpt")]


def test_full_rootfs_export_restores_into_an_empty_rootfs(make_bundle, containers, busybox_lower, tmp_path,
                                                         runc_ckpt_bin):
    """A plain-directory rootfs is archived whole ("full") and comes back into an empty directory."""
    b = make_bundle(args=["sh", "-c", SCRIPT])
    subprocess.run(["umount", str(b.rootfs)], check=True)
    b.mounted = False
    subprocess.run(["cp", "-a", f"{busybox_lower}/.", str(b.rootfs)], check=True)
    cid = containers.run(b)
    wait_for(lambda: b.counter() > 3, what="counter to start")
    env = restore_env(tmp_path)
    archive = tmp_path / "full.tar.zst"
    out = subprocess.run([runc_ckpt_bin, "--root", str(containers.root), "checkpoint", "--export", str(archive),
                          cid], stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr
    before = b.counter()
    subprocess.run(["rm", "-rf", str(b.rootfs)], check=True)
    b.rootfs.mkdir()
    out = subprocess.run([runc_ckpt_bin, "--root", str(containers.root), "restore", "--import", str(archive),
                          "--bundle", str(b.path), "-d"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, env=env, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert containers.status(cid) == "running"
    wait_for(lambda: b.counter() > before + 2, what="counter to continue after restore")
    assert (b.rootfs / "newfile").read_text() == "new\n"
    assert not (b.rootfs / "etc" / "lower-file").exists()
