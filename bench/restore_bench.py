#!/usr/bin/env python3
"""Benchmark restore --import's archive work: staging + verification + apply, against a floor.

Builds an archive in podman's layout (plus our manifest) with a large rootfs
diff and a large volume, then times, each in a child process (peak RSS is the
child's ru_maxrss):
  floor:  `zstd -d -c ARCHIVE | tar -x` of the same archive (no checks, no merge);
  ours:   runc-ckpt's import path (archive/reader stage, manifest verify,
          safe merge plan, rename-merge apply) into a base rootfs and an empty
          volume dir. The CRIU restore itself is NOT timed: it does not depend
          on the archive code and needs a live container.
Ratios are printed against the floor and against podman 4.3.1's measured
`restore --import` times on this machine (2 GiB rootfs diff 9.6 s, 1 GiB
volume 3.5 s; scaled linearly to the sizes used). Targets: <= 0.6x podman,
peak RSS <= 150 MiB.

With --podman, a like-for-like run as well: a private podman (runtime runc)
checkpoints a container whose rootfs diff and named volume hold the same
amounts of data into a podman export; then the whole restore, CRIU included,
is timed both ways: `runc-ckpt restore --import` into a plain runc bundle,
and `podman container restore --import`.

Usage: bench/restore_bench.py [--rootfs-mib N] [--volume-mib N] [--dir DIR] [--keep] [--podman]
(defaults are small; use --rootfs-mib 2048 --volume-mib 1024 for podman's sizes).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = str(Path(__file__).resolve().parent.parent)
PODMAN_S_PER_MIB_ROOTFS = 9.6 / 2048
PODMAN_S_PER_MIB_VOLUME = 3.5 / 1024
FILE_MIB = 16


class _HashTee:
    """A writer that hashes and counts what passes through (for the manifest)."""

    def __init__(self, out):
        self.out, self.sha, self.size = out, hashlib.sha256(), 0

    def write(self, data):
        self.sha.update(data)
        self.size += len(data)
        return self.out.write(data)


def _data_file(mib: int, seed: int) -> bytes:
    """Half random, half zeros per MiB: compresses about 2:1, like binaries and libraries."""
    half = 512 * 1024
    return b"".join(os.urandom(half) + bytes(half) for _ in range(mib))


def _inner_tar(path: str, total_mib: int, prefix: str) -> None:
    with open(path, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
        d = tarfile.TarInfo(prefix)
        d.type, d.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(d)
        left, i = total_mib, 0
        while left > 0:
            n = min(FILE_MIB, left)
            data = _data_file(n, i)
            info = tarfile.TarInfo(f"{prefix}/file-{i:05d}")
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            tar.addfile(info, io.BytesIO(data))
            left -= n
            i += 1


def build_archive(workdir: str, rootfs_mib: int, volume_mib: int, volume_source: str) -> str:
    import zstandard
    inner_root = os.path.join(workdir, "rootfs-diff.tar")
    inner_vol = os.path.join(workdir, "vol1.tar")
    _inner_tar(inner_root, rootfs_mib, "data")
    _inner_tar(inner_vol, volume_mib, "v")
    spec = {"ociVersion": "1.0.2", "root": {"path": "rootfs"}, "process": {"args": ["sh"]},
            "mounts": [{"destination": "/vol", "type": "bind", "source": volume_source, "options": ["rbind"]}]}
    small = {
        "spec.dump": json.dumps(spec).encode(),
        "config.dump": json.dumps({"id": "bench", "name": "bench", "runtime": "runc"}).encode(),
        "checkpoint/inventory.img": b"fake",
        "deleted.files": b"[]",
    }
    archive = os.path.join(workdir, "bench.tar.zst")
    members = {}
    with open(archive, "wb") as raw:
        cctx = zstandard.ZstdCompressor(level=3, threads=os.cpu_count() or 1)
        with cctx.stream_writer(raw, closefd=False) as z, \
                tarfile.open(fileobj=z, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for name, data in small.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                members[name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            for name, path in (("rootfs-diff.tar", inner_root), ("volumes/vol1.tar", inner_vol)):
                info = tarfile.TarInfo(name)
                info.size = os.path.getsize(path)
                sha = hashlib.sha256()
                with open(path, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        sha.update(chunk)
                with open(path, "rb") as f:
                    tar.addfile(info, f)
                members[name] = {"size": info.size, "sha256": sha.hexdigest()}
            doc = json.dumps({"format": "runc-ckpt", "format_version": 1, "members": members,
                              "rootfs": {"kind": "overlay-diff", "root_mode": 0o755}}).encode()
            info = tarfile.TarInfo("runc-ckpt.manifest.json")
            info.size = len(doc)
            tar.addfile(info, io.BytesIO(doc))
    os.unlink(inner_root)
    os.unlink(inner_vol)
    return archive


def child_ours(archive: str, bundle: str, volume: str) -> None:
    """The import path of runc_ckpt.restore.importer up to (not including) runc restore."""
    from runc_ckpt.archive import reader
    from runc_ckpt.restore import importer
    rootfs = os.path.join(bundle, "rootfs")
    import_dir = tempfile.mkdtemp(prefix=importer.IMPORT_PREFIX, dir=bundle)
    vols = importer._VolumeTargets(None, [os.path.dirname(os.path.dirname(volume))], ignore=False)
    staged = reader.stage(archive, reader.Targets(import_dir, rootfs, vols.directory))
    try:
        staged.verify()
        plans = importer._plan_merges(staged)
        importer._apply(staged, plans)
    finally:
        staged.discard()
        shutil.rmtree(import_dir)


def _timed(argv: list[str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user+sys, the whole tree) and peak RSS (MiB, its largest process).

    CPU time is printed because wall time on a shared machine swings with other load.
    """
    t0 = time.monotonic()
    proc = subprocess.Popen(argv)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed with exit code {proc.returncode}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024




def _write_data(directory: str, mib: int) -> None:
    os.makedirs(directory, exist_ok=True)
    left, i = mib, 0
    while left > 0:
        n = min(FILE_MIB, left)
        with open(os.path.join(directory, f"file-{i:05d}"), "wb") as f:
            f.write(_data_file(n, i))
        left -= n
        i += 1


def podman_compare(work: str, rootfs_mib: int, volume_mib: int) -> None:
    """Time a full restore of the same podman export with runc-ckpt and with podman."""
    # The same private podman as the tests (tests/podman_env.py), with the real
    # runc under a private root as its runtime: nothing of the host's podman or
    # /run/runc is used. Not under `work`: podman refuses a runroot over 50 characters.
    sys.path.insert(0, REPO)
    from tests.podman_env import PodmanEnv, build_busybox_tar
    env = PodmanEnv(Path(tempfile.mkdtemp(prefix="rbp-", dir="/tmp")), shutil.which("runc") or "runc")

    def pm(*a: str) -> str:
        return env.podman(*a, timeout=1800).stdout.strip()

    image_tar = str(build_busybox_tar(Path(work) / "image.tar"))
    runc_root = os.path.join(work, "runc-root")
    cid = "bench-podman"
    try:
        env.import_image(Path(image_tar))
        pm("volume", "create", "bigvol")
        pm("create", "--name", "big", "-v", "bigvol:/data", env.image, "/bin/busybox", "sh", "-c",
           "while true; do /bin/busybox sleep 1; done")
        _write_data(os.path.join(pm("mount", "big"), "bigdata"), rootfs_mib)
        pm("unmount", "big")
        _write_data(pm("volume", "inspect", "-f", "{{.Mountpoint}}", "bigvol"), volume_mib)
        pm("start", "big")
        export = os.path.join(work, "podman-export.tar.zst")
        t0 = time.monotonic()
        pm("container", "checkpoint", "-e", export, "big")
        print(f"podman checkpoint --export: {time.monotonic() - t0:6.2f} s, "
              f"archive {os.path.getsize(export) / 2**20:.0f} MiB")
        volume_dir = pm("volume", "inspect", "-f", "{{.Mountpoint}}", "bigvol")
        pm("rm", "-f", "big")
        pm("volume", "rm", "bigvol")

        bundle = os.path.join(work, "bundle")
        os.makedirs(os.path.join(bundle, "rootfs"))
        subprocess.run(["tar", "-C", os.path.join(bundle, "rootfs"), "-xf", image_tar], check=True)
        subprocess.run(["sync"], check=True)
        runc_ckpt = os.path.join(os.path.dirname(sys.executable), "runc-ckpt")
        cfg = os.path.join(work, "runc-ckpt.yaml")
        with open(cfg, "w") as f:
            f.write("volume_roots: []\n")
        os.environ["RUNC_CKPT_CONFIG"] = cfg
        with open(os.devnull, "r+b") as null:
            os.dup2(null.fileno(), 0)
        ours_s, ours_cpu, ours_rss = _timed([runc_ckpt, "--root", runc_root, "restore", "--import", export,
                                             "--bundle", bundle, "-d", cid])
        subprocess.run(["runc", "--root", runc_root, "kill", cid, "KILL"], check=False)
        time.sleep(0.5)
        subprocess.run(["runc", "--root", runc_root, "delete", "--force", cid], check=False)
        shutil.rmtree(volume_dir, ignore_errors=True)
        shutil.rmtree(bundle, ignore_errors=True)
        subprocess.run(["sync"], check=True)
        t0 = time.monotonic()
        pm("container", "restore", "--import", export)
        podman_s = time.monotonic() - t0
        print(f"full restore, runc-ckpt (CRIU included): {ours_s:6.2f} s wall  {ours_cpu:6.2f} s CPU"
              f"   peak RSS {ours_rss:6.1f} MiB")
        print(f"full restore, podman restore --import:   {podman_s:6.2f} s wall")
        print(f"ratio runc-ckpt/podman (same archive):   {ours_s / podman_s:5.2f}   (target <= 0.60)")
    finally:
        subprocess.run(["runc", "--root", runc_root, "delete", "--force", cid], capture_output=True, check=False)
        env.teardown()


def _fresh_target(base: str) -> tuple[str, str]:
    shutil.rmtree(base, ignore_errors=True)
    rootfs = os.path.join(base, "bundle", "rootfs")
    os.makedirs(os.path.join(rootfs, "etc"))
    with open(os.path.join(rootfs, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0::/:/bin/sh\n")
    volume = os.path.join(base, "volumes", "vol1", "_data")
    os.makedirs(volume)
    subprocess.run(["sync"], check=True)
    return os.path.join(base, "bundle"), volume


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rootfs-mib", type=int, default=256)
    ap.add_argument("--volume-mib", type=int, default=128)
    ap.add_argument("--dir", default=None, help="work directory (default: a temp dir under /var/tmp)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--podman", action="store_true", help="also compare full restores with podman's")
    ap.add_argument("--child", nargs=3, metavar=("ARCHIVE", "BUNDLE", "VOLUME"), help=argparse.SUPPRESS)
    ap.add_argument("--build", nargs=2, metavar=("WORK", "VOLUME"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child_ours(*args.child)
        return 0
    if args.build:
        print(build_archive(args.build[0], args.rootfs_mib, args.volume_mib, args.build[1]))
        return 0
    work = args.dir or tempfile.mkdtemp(prefix="restore-bench-", dir="/var/tmp")
    os.makedirs(work, exist_ok=True)
    try:
        target_base = os.path.join(work, "target")
        bundle, volume = _fresh_target(target_base)
        print(f"building archive: rootfs diff {args.rootfs_mib} MiB, volume {args.volume_mib} MiB ...",
              flush=True)
        # Built in a child so this process stays small: a child's peak RSS (ru_maxrss)
        # starts from its parent's size at fork time.
        archive = subprocess.run([sys.executable, os.path.abspath(__file__), "--rootfs-mib", str(args.rootfs_mib),
                                  "--volume-mib", str(args.volume_mib), "--build", work, volume],
                                 check=True, capture_output=True, text=True).stdout.strip()
        print(f"archive: {os.path.getsize(archive) / 2**20:.0f} MiB (zstd)")

        floor_dir = os.path.join(work, "floor")
        shutil.rmtree(floor_dir, ignore_errors=True)
        os.makedirs(floor_dir)
        subprocess.run(["sync"], check=True)
        floor_s, floor_cpu, floor_rss = _timed(["sh", "-c", f"zstd -q -d -c '{archive}' | tar -x -C '{floor_dir}'"])
        shutil.rmtree(floor_dir)

        subprocess.run(["sync"], check=True)
        ours_s, ours_cpu, ours_rss = _timed([sys.executable, os.path.abspath(__file__), "--child", archive, bundle,
                                             volume])
        ok = os.path.isdir(os.path.join(bundle, "rootfs", "data")) and os.path.isdir(os.path.join(volume, "v"))
        podman_s = args.rootfs_mib * PODMAN_S_PER_MIB_ROOTFS + args.volume_mib * PODMAN_S_PER_MIB_VOLUME
        print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"floor (zstd -d | tar -x):        {floor_s:6.2f} s wall  {floor_cpu:6.2f} s CPU"
              f"   peak RSS {floor_rss:6.1f} MiB")
        print(f"runc-ckpt stage+verify+apply:    {ours_s:6.2f} s wall  {ours_cpu:6.2f} s CPU"
              f"   peak RSS {ours_rss:6.1f} MiB   {'applied' if ok else 'NOT APPLIED'}")
        print(f"podman restore --import (scaled from measured figures): {podman_s:6.2f} s")
        print(f"ratio ours/floor:  {ours_s / floor_s:5.2f} wall, {ours_cpu / floor_cpu:5.2f} CPU")
        print(f"ratio ours/podman: {ours_s / podman_s:5.2f}   (target <= 0.60)")
        print(f"peak RSS target <= 150 MiB: {'met' if ours_rss <= 150 else 'MISSED'}")
        if args.podman:
            shutil.rmtree(target_base, ignore_errors=True)
            os.unlink(archive)
            podman_compare(work, args.rootfs_mib, args.volume_mib)
        return 0 if ok else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
