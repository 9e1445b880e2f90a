"""The full round trip: `runc-ckpt checkpoint --export`, a new host's rootfs, `runc-ckpt restore --import`."""

from __future__ import annotations

import json
import os
import subprocess

from tests.integration.conftest import wait_for
from tests.integration.test_restore_import_real import SCRIPT, as_new_host, restore_env


def run_and_export(runc_ckpt_bin: str, containers, b, archive, env: dict) -> tuple[str, int]:
    """Start the bundle, let its counter run, checkpoint --export it: (container ID, counter when stopped)."""
    cid = containers.run(b)
    wait_for(lambda: b.counter() > 3, what="counter to start")
    out = subprocess.run([runc_ckpt_bin, "--root", str(containers.root), "checkpoint", "--export", str(archive),
                          cid], stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr
    return cid, b.counter()


def import_and_continue(runc_ckpt_bin: str, containers, archive, b, cid: str, before: int, env: dict) -> None:
    """restore --import, detached, the ID taken from the archive; the counter must go on from `before`."""
    out = subprocess.run([runc_ckpt_bin, "--root", str(containers.root), "restore", "--import", str(archive),
                          "--bundle", str(b.path), "-d"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, env=env, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert containers.status(cid) == "running"
    wait_for(lambda: b.counter() > before + 2, what="counter to continue after restore")


def test_export_then_import_roundtrip(make_bundle, containers, busybox_lower, tmp_path, runc_ckpt_bin):
    b = make_bundle(args=["sh", "-c", SCRIPT], volumes={"vol1": "/data"})
    env = restore_env(tmp_path)
    archive = tmp_path / "export.tar.zst"
    cid, before = run_and_export(runc_ckpt_bin, containers, b, archive, env)
    assert containers.status(cid) is None
    as_new_host(b, busybox_lower)

    info = subprocess.run([runc_ckpt_bin, "inspect", "--format", "json", str(archive)], capture_output=True,
                          text=True, check=False)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["engine"] == "runc-ckpt"
    assert json.loads(info.stdout)["verified"] is True

    import_and_continue(runc_ckpt_bin, containers, archive, b, cid, before, env)
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
    env = restore_env(tmp_path)
    archive = tmp_path / "full.tar.zst"
    cid, before = run_and_export(runc_ckpt_bin, containers, b, archive, env)
    subprocess.run(["rm", "-rf", str(b.rootfs)], check=True)
    b.rootfs.mkdir()
    import_and_continue(runc_ckpt_bin, containers, archive, b, cid, before, env)
    assert (b.rootfs / "newfile").read_text() == "new\n"
    assert not (b.rootfs / "etc" / "lower-file").exists()


def test_bind_mount_listed_in_volumes_annotation_round_trips(make_bundle, containers, busybox_lower, tmp_path,
                                                             runc_ckpt_bin):
    """io.runc-ckpt.volumes: a host dir bind mount travels in the archive beside the named volume."""
    host = tmp_path / "host-data"
    host.mkdir()
    b = make_bundle(args=["sh", "-c", "mkdir -p /extra/sub; echo bound > /extra/sub/b; " + SCRIPT],
                    volumes={"vol1": "/data"})
    spec = b.config()
    spec["mounts"].append({"destination": "/extra", "type": "bind", "source": str(host), "options": ["rbind", "rw"]})
    spec["annotations"] = {"io.runc-ckpt.volumes": "/extra"}
    b.write_config(spec)
    env = restore_env(tmp_path)
    archive = tmp_path / "export.tar.zst"
    cid, before = run_and_export(runc_ckpt_bin, containers, b, archive, env)
    as_new_host(b, busybox_lower)
    subprocess.run(["rm", "-rf", str(host / "sub")], check=True)

    import_and_continue(runc_ckpt_bin, containers, archive, b, cid, before, env)
    assert (host / "sub" / "b").read_text() == "bound\n"
    assert (b.volumes["vol1"] / "sub" / "v").read_text() == "kept\n"
    assert not [n for n in os.listdir(host) if n.startswith(".runc-ckpt")]


MANY = "mkdir /many; for i in $(seq 300); do echo $i > /many/f$i; done; ln /many/f7 /many/link; " + SCRIPT


def test_many_file_overlay_diff_round_trips_through_gnu_tar(make_bundle, containers, busybox_lower, tmp_path,
                                                            runc_ckpt_bin):
    """300 new files (archive.tarstage: GNU tar writes the diff, spliced as zstd frames), a hardlink, a
    deleted lower file: inspect verifies it, restore --import brings all of it back."""
    b = make_bundle(args=["sh", "-c", MANY], volumes={"vol1": "/data"})
    env = restore_env(tmp_path)
    archive = tmp_path / "many.tar.zst"
    cid, before = run_and_export(runc_ckpt_bin, containers, b, archive, env)
    assert b"\x50\x2a\x4d\x18" in archive.read_bytes()      # the header slot's skippable frame: tar's path ran
    as_new_host(b, busybox_lower)
    info = subprocess.run([runc_ckpt_bin, "inspect", "--format", "json", str(archive)], capture_output=True,
                          text=True, check=False)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["verified"] is True
    import_and_continue(runc_ckpt_bin, containers, archive, b, cid, before, env)
    assert [(b.rootfs / "many" / f"f{i}").read_text() for i in (1, 150, 300)] == ["1\n", "150\n", "300\n"]
    assert len(os.listdir(b.rootfs / "many")) == 301
    assert os.stat(b.rootfs / "many" / "link").st_ino == os.stat(b.rootfs / "many" / "f7").st_ino
    assert not (b.rootfs / "etc" / "lower-file").exists()
    assert (b.volumes["vol1"] / "sub" / "v").read_text() == "kept\n"
