"""Periodic checkpoints with real runc + CRIU: a full export, incremental exports on top, restore of the chain."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from tests.integration.conftest import mount_overlay, wait_for
from tests.integration.test_incremental_real import _verify, toucher  # noqa: F401  # toucher: the fixture
from tests.integration.test_restore_import_real import restore_env

MIB = 64
EVERY = 20                  # the workload rewrites every 20th page of its buffer: 5 %


def _ckpt(bin_: str, root: Path, env: dict, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    t0 = time.monotonic()
    out = subprocess.run([bin_, "--root", str(root), *args], stdin=subprocess.DEVNULL, capture_output=True,
                         text=True, env=env, timeout=300, check=False)
    return out, time.monotonic() - t0


def _fresh_rootfs(b, busybox_lower: Path) -> None:
    """Another host's bundle: the image's files only (the archive brings the rest, /toucher included)."""
    subprocess.run(["umount", str(b.rootfs)], check=True)
    b.mounted = False
    for d in (b.upper, b.work):
        shutil.rmtree(d)
        d.mkdir()
    mount_overlay(busybox_lower, b.upper, b.work, b.rootfs)
    b.mounted = True


def _bundle_state(b) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(b.path)), p.lstat().st_size) for p in b.path.rglob("*")
                  if not str(p).startswith(str(b.work)))


def test_incremental_exports_restore_through_their_chain(make_bundle, containers, toucher, busybox_lower,  # noqa: F811
                                                          tmp_path, runc_ckpt_bin):
    b = make_bundle(args=["/toucher", str(MIB), str(EVERY)])
    shutil.copy(toucher, b.rootfs / "toucher")
    cid = containers.run(b, cid=f"periodic-{os.urandom(4).hex()}")
    wait_for(lambda: (b.rootfs / "ready").exists(), timeout=60, what="the workload to fill its memory")
    env = restore_env(tmp_path)
    chain = tmp_path / "chain"
    chain.mkdir()
    full, child, grandchild = chain / "job-0.tar.zst", chain / "job-1.tar.zst", chain / "job-2.tar.zst"

    out, full_s = _ckpt(runc_ckpt_bin, containers.root, env, "checkpoint", "-R", "--export", str(full), cid)
    assert out.returncode == 0, out.stderr
    (b.rootfs / "change").write_text("")
    wait_for(lambda: (b.rootfs / "changed").exists(), timeout=60, what="the workload to change 5 % of its pages")
    out, child_s = _ckpt(runc_ckpt_bin, containers.root, env, "checkpoint", "-R", "--export", str(child),
                         "--incremental-from", str(full), cid)
    assert out.returncode == 0, out.stderr
    # the last link without -R: the container stops, as after any checkpoint
    out, _ = _ckpt(runc_ckpt_bin, containers.root, env, "checkpoint", "--export", str(grandchild),
                   "--incremental-from", str(child), cid)
    assert out.returncode == 0, out.stderr
    assert containers.status(cid) is None
    ratio = child.stat().st_size / full.stat().st_size
    print(f"\nfull {full.stat().st_size} B in {full_s:.2f} s, incremental {child.stat().st_size} B in {child_s:.2f} s,"
          f" ratio {ratio:.3f}; second incremental {grandchild.stat().st_size} B")
    assert ratio <= 0.1
    assert grandchild.stat().st_size < child.stat().st_size

    info = subprocess.run([runc_ckpt_bin, "inspect", "--format", "json", str(grandchild)], capture_output=True,
                          text=True, env=env, check=False)
    assert info.returncode == 0, info.stderr
    shown = json.loads(info.stdout)["chain"]
    assert [(link["archive"], link["depth"], link["digest"]) for link in shown] == [
        ("job-1.tar.zst", 2, "ok"), ("job-0.tar.zst", 1, "ok")]

    _fresh_rootfs(b, busybox_lower)
    before = _bundle_state(b)
    # job-1 replaced by another valid archive, job-1 missing, a byte of job-1 changed
    bad, missing, tampered = tmp_path / "bad", tmp_path / "missing", tmp_path / "tampered"
    for d in (bad, missing, tampered):
        d.mkdir()
        shutil.copy(grandchild, d / grandchild.name)
        shutil.copy(full, d / full.name)
    shutil.copy(full, bad / child.name)
    data = bytearray(child.read_bytes())
    data[len(data) // 2] ^= 0x40
    (tampered / child.name).write_bytes(bytes(data))
    for d, why, status in ((bad, "is not the one its child was made on", "mismatch"),
                           (missing, "is missing", "missing"), (tampered, "job-1.tar.zst", "bad")):
        info = subprocess.run([runc_ckpt_bin, "inspect", "--format", "json", str(d / grandchild.name)],
                              capture_output=True, text=True, env=env, check=False)
        assert info.returncode != 0 and why in info.stderr
        assert [link["digest"] for link in json.loads(info.stdout)["chain"]] == [status]
        out, _ = _ckpt(runc_ckpt_bin, containers.root, env, "restore", "--import", str(d / grandchild.name),
                       "--bundle", str(b.path), "-d")
        assert out.returncode != 0
        assert why in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert containers.status(cid) is None
        assert _bundle_state(b) == before
        assert not (tmp_path / "state" / cid / "restore-work" / "restore.log").exists()   # CRIU never ran

    # the child alone, elsewhere, finds its chain through --incremental-dir
    out, _ = _ckpt(runc_ckpt_bin, containers.root, env, "restore", "--import", str(missing / grandchild.name),
                   "--incremental-dir", str(chain), "--bundle", str(b.path), "-d")
    assert out.returncode == 0, out.stderr
    assert containers.status(cid) == "running"
    assert _verify(b.rootfs) == f"ok {MIB << 8}"
    assert not [n for n in os.listdir(b.path) if n.startswith(".runc-ckpt")]
