"""The fixtures themselves: a busybox container counts, and runc+CRIU can checkpoint and restore it."""

from __future__ import annotations

import subprocess

from tests.integration.conftest import runc, wait_for


def test_plain_runc_checkpoint_restore_roundtrip(make_bundle, containers, tmp_path):
    b = make_bundle()
    cid = containers.run(b)
    wait_for(lambda: b.counter() > 3, what="counter to start")
    images = tmp_path / "images"
    runc(containers.root, "checkpoint", "--image-path", str(images), cid)
    assert (images / "inventory.img").exists()
    assert containers.status(cid) is None
    before = b.counter()
    subprocess.run(["runc", "--root", str(containers.root), "restore", "-d", "--image-path", str(images),
                    "--bundle", str(b.path), cid], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   stdin=subprocess.DEVNULL, check=True)
    assert containers.status(cid) == "running"
    wait_for(lambda: b.counter() > before + 2, what="counter to continue after restore")
