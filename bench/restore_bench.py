#!/usr/bin/env python3
"""Benchmark `runc-ckpt restore --import` of big files (rootfs diff + named volume) against podman and the limit.

A private podman (bench/_common.PodmanEnv, runtime: the real runc under a
private root) checkpoints a busybox-static container whose rootfs diff holds
--rootfs-mib MiB and whose named volume holds --volume-mib MiB (16 MiB files,
each MiB half random, half zeros: about 2:1, like binaries) with
`podman container checkpoint --export`. That one archive is then read by
  inspect  `runc-ckpt inspect ARCHIVE`: runc-ckpt's archive path alone through its
           public CLI (decompress, walk and check every member; nothing written).
           This bench used to time staging + verify + apply in-process; without
           CRIU that has no command line of its own, so the archive path is now
           timed here and, end to end, by `restore --import` below;
  floor    `zstd -dc ARCHIVE | tar -x` into an empty directory (no checks, no merge);
and restored, CRIU included, three ways in turn (the same order every run):
  ours     `runc-ckpt restore --import ARCHIVE --bundle B -d ID` into a plain runc
           bundle holding the busybox image, under a private --root, with a config
           whose volume_roots is podman's (private) volume dir;
  limit    the floor, then `tar -x` of rootfs-diff.tar into an equal bundle and of
           volumes/NAME.tar into the volume dir, then `runc restore` of the same
           images with the config.json ours produced: no checks at all;
  podman   `podman container restore --import ARCHIVE`.
Ours and inspect run under a small meter process (bench/_common.METER): wall
and CPU seconds and peak RSS, the largest single process of the tree
(runc-ckpt's Python, runc or CRIU). Goals: ours/podman <= 0.6, peak RSS of
ours <= 150 MiB; ours/limit and inspect/floor are printed for information.
Exit 3 if a goal is missed (never in --smoke).

Usage: bench/restore_bench.py [--rootfs-mib N] [--volume-mib N] [--dir DIR] [--smoke] [--scale F]
(defaults 256 + 128 MiB; --rootfs-mib 2048 --volume-mib 1024 for the issue's sizes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from _common import (
    RUN,
    Goals,
    Metered,
    PodmanEnv,
    Runc,
    add_common_args,
    busybox_tar,
    check_runc_ckpt,
    metered,
    ratio,
    real_runc,
    require,
    run_main,
    runc_ckpt_config,
    scaled,
    settle,
    umount_under,
    unpack,
    write_half_random,
)

GOALS = {"podman": 0.6, "rss": 150.0}
VOLUME = "bigvol"
OURS, LIMIT = f"ours-{RUN}", f"limit-{RUN}"     # runc container IDs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rootfs-mib", type=int, default=None, help="rootfs diff size (default 256)")
    ap.add_argument("--volume-mib", type=int, default=None, help="named volume size (default 128)")
    ap.add_argument("--dir", default="/var/tmp", help="where the work directory goes")
    ap.add_argument("--settle", type=float, default=None, help="seconds to wait after each clean-up (default 5)")
    add_common_args(ap)
    args = ap.parse_args()
    runc_ckpt = check_runc_ckpt(args.runc_ckpt)
    require("podman", "conmon", "runc", "criu", "tar", "zstd", "busybox")
    rootfs_mib = args.rootfs_mib or (4 if args.smoke else scaled(256, args.scale))
    volume_mib = args.volume_mib or (2 if args.smoke else scaled(128, args.scale))
    pause = args.settle if args.settle is not None else (0 if args.smoke else 5)
    goals = Goals(smoke=args.smoke)
    work = Path(tempfile.mkdtemp(prefix="restore-bench-", dir=args.dir))
    # Not under work: podman refuses a runroot path longer than 50 characters.
    pm = PodmanEnv(Path(tempfile.mkdtemp(prefix="rcrb-", dir="/tmp")), real_runc())
    runc = Runc(work / "runc-root")
    try:
        image_tar = busybox_tar(work / "image.tar")
        pm.import_image(image_tar)
        pm("volume", "create", VOLUME)
        pm("create", "--name", "big", "-v", f"{VOLUME}:/data", pm.image, "/bin/busybox", "sh", "-c",
           "while true; do /bin/busybox sleep 1; done")
        print(f"writing rootfs diff {rootfs_mib} MiB, volume {volume_mib} MiB ...", flush=True)
        write_half_random(os.path.join(pm("mount", "big"), "bigdata"), rootfs_mib)
        pm("unmount", "big")
        volume_dir = pm.volume_dir(VOLUME)
        write_half_random(str(volume_dir), volume_mib)
        pm("start", "big")
        export = work / "podman-export.tar.zst"
        settle(0)
        t0 = time.perf_counter()
        pm("container", "checkpoint", "-e", str(export), "big")
        print(f"podman checkpoint --export: {time.perf_counter() - t0:6.2f} s, "
              f"archive {export.stat().st_size / 2**20:.0f} MiB", flush=True)
        pm("rm", "-f", "-t", "0", "big")
        pm("volume", "rm", VOLUME)
        shutil.rmtree(volume_dir.parent, ignore_errors=True)

        # The archive path alone: runc-ckpt inspect against the floor.
        inspect = metered([runc_ckpt, "inspect", str(export)])
        floor_dir = work / "floor"
        floor_dir.mkdir()
        floor = metered(["sh", "-c", f"zstd -q -dc '{export}' | tar -x -C '{floor_dir}'"])
        shutil.rmtree(floor_dir)

        # ours: a plain runc bundle holding the image; podman's volume root is where named volumes live.
        env = runc_ckpt_config(work / "runc-ckpt.yaml", work / "state", [str(pm.root / "volumes")])
        bundle = work / "ours"
        unpack(image_tar, bundle / "rootfs")
        settle(pause)
        ours = metered([runc_ckpt, "--root", str(runc.root), "restore", "--import", str(export), "--bundle",
                        str(bundle), "-d", OURS], env=env)
        applied = (bundle / "rootfs" / "bigdata").is_dir() and volume_dir.is_dir()
        spec = json.loads((bundle / "config.json").read_text())
        root_mode = (bundle / "rootfs").stat().st_mode & 0o7777      # CRIU checks it
        runc.remove(OURS)
        shutil.rmtree(volume_dir.parent, ignore_errors=True)

        # limit: unpack, untar the diff and the volume, runc restore with ours' config.json.
        limit_b = work / "limit"
        unpack(image_tar, limit_b / "rootfs")
        (limit_b / "rootfs").chmod(root_mode)
        if (bundle / ".runc-ckpt-binds").is_dir():     # hosts, resolv.conf... the spec points at
            shutil.copytree(bundle / ".runc-ckpt-binds", limit_b / ".runc-ckpt-binds", symlinks=True)
        doc = json.loads(json.dumps(spec).replace(str(bundle), str(limit_b)))
        doc.setdefault("linux", {})["cgroupsPath"] = f"/runc-ckpt-bench-{LIMIT}"   # not ours' (maybe busy)
        (limit_b / "config.json").write_text(json.dumps(doc))
        images = work / "limit-import"
        images.mkdir()
        volume_dir.mkdir(parents=True)
        script = (f"zstd -q -dc '{export}' | tar -x -C '{images}' && "
                  f"tar -x -f '{images}/rootfs-diff.tar' -C '{limit_b}/rootfs' && "
                  f"tar -x -f '{images}/volumes/{VOLUME}.tar' -C '{volume_dir}' && "
                  f"{runc.binary} --root '{runc.root}' restore --image-path '{images}/checkpoint' "
                  f"--work-path '{images}/work' --bundle '{limit_b}' -d {LIMIT}")
        settle(pause)
        limit = metered(["sh", "-c", script])
        runc.remove(LIMIT)
        shutil.rmtree(volume_dir.parent, ignore_errors=True)

        settle(pause)
        t0 = time.perf_counter()
        pm("container", "restore", "--import", str(export))
        podman_s = time.perf_counter() - t0
        pm("rm", "-f", "-t", "0", "big")

        print(f"\nrestore --import, rootfs diff {rootfs_mib} MiB + volume {volume_mib} MiB, one podman archive "
              f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; a shared machine: noisy)")
        rows: list[tuple[str, Metered | float]] = [("ours", ours), ("limit", limit), ("podman", podman_s),
                                                    ("inspect", inspect), ("floor", floor)]
        for name, m in rows:
            if isinstance(m, Metered):
                print(f"  {name:8} {m.wall:7.2f} s wall  {m.cpu:6.2f} s CPU   peak RSS {m.rss:6.1f} MiB")
            else:
                print(f"  {name:8} {m:7.2f} s wall")
        print("  " + goals.check("ours/podman", ratio(ours.wall, podman_s), GOALS["podman"]))
        print("  " + goals.check("ours/limit", ratio(ours.wall, limit.wall), None))
        print("  " + goals.check("inspect/floor (the archive path alone)", ratio(inspect.wall, floor.wall), None))
        print("  " + goals.check("peak RSS of ours", ours.rss, GOALS["rss"], " MiB"))
        if not applied:
            print("ours did NOT apply the rootfs diff and the volume")
            return 1
        return goals.exit_code()
    finally:
        runc.remove_all()
        pm.teardown()
        umount_under(work)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    run_main(main)
