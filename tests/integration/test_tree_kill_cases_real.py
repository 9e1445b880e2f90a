"""Measured failures of issue 19 with the real runc and CRIU: delete through criu-root, stale images, rmtree across mounts.

Each case first shows the damage where it happens without runc-ckpt (runc's
own delete), so the test fails if the premise stops holding, then runc-ckpt's
behaviour beside it.
"""

from __future__ import annotations

import os
import subprocess
import time

from tests.integration.conftest import wait_for
from tests.integration.test_tree_kill_real import cleanup, host_a, start  # host_a: a fixture
from tests.integration.treekill_helpers import TreeHost, assert_nothing_left, counter, mounts_below

__all__ = ["host_a"]


def killed_restore(host: TreeHost, b, tmp_path, name: str) -> str:
    """A container checkpointed to an archive, then a restore --import of it killed with its tree inside CRIU."""
    cid = start(host, b)
    archive = tmp_path / f"{name}.tar.zst"
    out = host.call("checkpoint", "--export", str(archive), cid)
    assert out.returncode == 0, out.stderr
    killed = host.call("restore", "--import", str(archive), "--bundle", str(b.path), "-d", cid,
                       fault="criu:pre-restore")
    assert killed.returncode == -9, killed.stderr
    time.sleep(0.2)
    assert os.path.isdir(host.root / cid) and not (host.root / cid / "state.json").exists()
    assert any(m.endswith("/criu-root") for m in mounts_below(host.root / cid)), "no criu-root left to test with"
    return cid


def test_delete_force_never_empties_the_rootfs_after_a_killed_restore(host_a, make_bundle, tmp_path):
    # runc's own delete -f: RemoveAll(<root>/<id>) goes through the leftover criu-root into the rootfs.
    plain = make_bundle(name="plain")
    cid = killed_restore(host_a, plain, tmp_path, "plain")
    assert (plain.rootfs / "etc" / "lower-file").exists()
    subprocess.run(["runc", "--root", str(host_a.root), "delete", "-f", cid], capture_output=True, check=False)
    assert not (plain.rootfs / "etc" / "lower-file").exists(), "runc no longer empties the rootfs: update README"
    for m in sorted(mounts_below(host_a.root) + mounts_below(host_a.state), reverse=True) + [str(plain.rootfs)]:
        subprocess.run(["umount", "-l", m], check=False)     # what plain runc leaves, out of the way
    plain.mounted = False
    subprocess.run(["rm", "-rf", str(host_a.root / cid), str(host_a.state / cid)], check=True)  # runc stopped at the mount
    # runc-ckpt delete -f: the sh front end unmounts criu-root first; the rootfs keeps every file.
    ours = make_bundle(name="ours")
    cid2 = killed_restore(host_a, ours, tmp_path, "ours")
    before = sorted(os.listdir(ours.rootfs))
    out = subprocess.run([host_a.bin, "--root", str(host_a.root), "delete", "-f", cid2], capture_output=True,
                         text=True, env=host_a.env, check=False)
    assert out.returncode == 0, out.stderr
    assert (ours.rootfs / "etc" / "lower-file").exists() and (ours.rootfs / "counter").exists()
    assert sorted(os.listdir(ours.rootfs)) == before
    assert not os.path.exists(host_a.root / cid2)
    assert not mounts_below(host_a.root)
    # and the next restore of that archive works
    r = host_a.call("restore", "--import", str(tmp_path / "ours.tar.zst"), "--bundle", str(ours.path), "-d", cid2)
    assert r.returncode == 0, r.stderr
    assert host_a.status(cid2) == "running"
    assert_nothing_left([(host_a, ours)], cid2, tmp_path)
    cleanup([(host_a, ours)], cid2)


def test_plain_restore_never_brings_back_images_older_than_a_completed_dump(host_a, make_bundle, tmp_path):
    b = make_bundle(name="web")
    cid = start(host_a, b)
    try:
        # 1. images kept in the state dir (--keep), restored by a plain `restore ID`.
        out = host_a.call("checkpoint", "--export", str(tmp_path / "A.tar.zst"), "--keep", cid)
        assert out.returncode == 0, out.stderr
        old = counter(b)
        r = host_a.call("restore", "-d", "--bundle", str(b.path), cid)
        assert r.returncode == 0, r.stderr
        wait_for(lambda: counter(b) > old + 10, timeout=20, what="the counter to move well past the old images")
        # 2. a second checkpoint whose runc-ckpt is killed once runc runs: runc completes the dump alone,
        #    the new images are stranded in .checkpoint.new-PID.
        newer = counter(b)
        killed = host_a.call("checkpoint", "--export", str(tmp_path / "B.tar.zst"), cid, fault="dump:kill")
        assert killed.returncode == -9
        wait_for(lambda: host_a.status(cid) is None, timeout=30, what="runc to finish the dump alone")
        assert any(n.startswith(".checkpoint.new-") for n in os.listdir(host_a.state / cid))
        # 3. a plain `restore ID`: the newer images, never the older ones.
        r = host_a.call("restore", "-d", "--bundle", str(b.path), cid)
        assert r.returncode == 0, r.stderr
        assert "recovered the images of an interrupted checkpoint" in r.stderr, r.stderr
        wait_for(lambda: host_a.status(cid) == "running", what="running")
        time.sleep(0.5)
        assert counter(b) >= newer, f"restored older images: counter {counter(b)} < {newer}"
        assert not any(n.startswith(".checkpoint.new-") for n in os.listdir(host_a.state / cid))
    finally:
        cleanup([(host_a, b)], cid)


def test_removal_never_goes_through_a_mount(tmp_path):
    """safe_remove unmounts a tmpfs below the tree before removing it; shutil.rmtree would empty it."""
    from runc_ckpt.runtime import safe_remove
    tree = tmp_path / "tree" / "a"
    tree.mkdir(parents=True)
    canary_dir = tmp_path / "canary"
    canary_dir.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(canary_dir)], check=True)
    try:
        (canary_dir / "keep").write_text("x")
        subprocess.run(["mount", "--bind", str(canary_dir), str(tree)], check=True)
        assert (tree / "keep").exists()
        assert safe_remove.remove_tree(str(tmp_path / "tree"))
        assert not (tmp_path / "tree").exists()
        assert (canary_dir / "keep").read_text() == "x"
    finally:
        subprocess.run(["umount", "-l", str(canary_dir)], check=False)
