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
Case tiny (issue 22) does the same with the bare busybox container (no data,
no volume): the fixed cost of a restore, goals ours/podman <= 1.0 and
ours/limit <= 1.5. Exit 3 if a goal is missed (never in --smoke).

Usage: bench/restore_bench.py [--cases big,tiny] [--rootfs-mib N] [--volume-mib N] [--dir DIR] [--smoke]
[--scale F] [--repeat N] (defaults 256 + 128 MiB; --rootfs-mib 2048 --volume-mib 1024 for the issue's sizes;
--repeat: N rounds of each contender on the one archive, each one's median reported).
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
# Issue 22: a tiny restore --import (the bare busybox container: the fixed cost) <= 1.0 x podman, <= 1.5 x the limit.
CASE_GOALS = {"big": GOALS, "tiny": {"podman": 1.0, "limit": 1.5, "rss": 150.0}}
VOLUME = "bigvol"
OURS, LIMIT = f"ours-{RUN}", f"limit-{RUN}"     # runc container IDs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="big,tiny", help="comma-separated, of big, tiny (default both)")
    ap.add_argument("--rootfs-mib", type=int, default=None, help="big: rootfs diff size (default 256)")
    ap.add_argument("--volume-mib", type=int, default=None, help="big: named volume size (default 128)")
    ap.add_argument("--dir", default="/var/tmp", help="where the work directory goes")
    ap.add_argument("--settle", type=float, default=None, help="seconds to wait after each clean-up (default 5)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="rounds of ours, the limit and podman on the one archive; each one's median round is "
                         "reported (a tiny restore's single calls swing by +-50 ms on a shared 2-core machine)")
    add_common_args(ap)
    args = ap.parse_args()
    runc_ckpt = check_runc_ckpt(args.runc_ckpt)
    if args.repeat < 1:
        ap.error("--repeat takes a number of rounds, at least 1")
    cases = [c for c in args.cases.split(",") if c]
    if set(cases) - set(CASE_GOALS):
        ap.error(f"unknown cases: {', '.join(sorted(set(cases) - set(CASE_GOALS)))}")
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
        code = 0
        for case in cases:
            sizes = (rootfs_mib, volume_mib) if case == "big" else (0, 0)
            code = max(code, run_case(case, *sizes, pm, runc, runc_ckpt, image_tar, work / case, pause, goals,
                                      args.repeat))
        return code or goals.exit_code()
    finally:
        runc.remove_all()
        pm.teardown()
        umount_under(work)
        shutil.rmtree(work, ignore_errors=True)


def run_case(case: str, rootfs_mib: int, volume_mib: int, pm: PodmanEnv, runc: Runc, runc_ckpt: str,
             image_tar: Path, work: Path, pause: float, goals: Goals, repeat: int = 1) -> int:
    """One podman archive (tiny: no data, no volume) restored by ours, the limit and podman, `repeat` rounds;
    1 if ours failed."""
    work.mkdir()
    volume = VOLUME if volume_mib else None
    name = f"{case}-{RUN}"
    if volume:
        pm("volume", "create", volume)
    pm("create", "--name", name, *(["-v", f"{volume}:/data"] if volume else []), pm.image, "/bin/busybox", "sh",
       "-c", "while true; do /bin/busybox sleep 1; done")
    if rootfs_mib:
        print(f"writing rootfs diff {rootfs_mib} MiB, volume {volume_mib} MiB ...", flush=True)
        write_half_random(os.path.join(pm("mount", name), "bigdata"), rootfs_mib)
        pm("unmount", name)
    volume_dir = pm.volume_dir(volume) if volume else None
    if volume_dir is not None:
        write_half_random(str(volume_dir), volume_mib)
    pm("start", name)
    export = work / "podman-export.tar.zst"
    settle(0)
    t0 = time.perf_counter()
    pm("container", "checkpoint", "-e", str(export), name)
    print(f"{case}: podman checkpoint --export: {time.perf_counter() - t0:6.2f} s, "
          f"archive {export.stat().st_size / 2**20:.1f} MiB", flush=True)
    pm("rm", "-f", "-t", "0", name)
    if volume_dir is not None:
        pm("volume", "rm", volume)
        shutil.rmtree(volume_dir.parent, ignore_errors=True)

    # The archive path alone: runc-ckpt inspect against the floor.
    inspect = metered([runc_ckpt, "inspect", str(export)])
    floor_dir = work / "floor"
    floor_dir.mkdir()
    floor = metered(["sh", "-c", f"zstd -q -dc '{export}' | tar -x -C '{floor_dir}'"])
    shutil.rmtree(floor_dir)

    # Each round: ours, the limit, podman, one after another on the same archive; each one's median round counts.
    ours_runs: list[Metered] = []
    limit_runs: list[Metered] = []
    podman_runs: list[float] = []
    applied = True
    for i in range(repeat):
        ours, ok, spec, root_mode = _ours(runc_ckpt, runc, pm, export, image_tar, work / f"ours-{i}",
                                          volume_dir, rootfs_mib, pause)
        applied = applied and ok
        ours_runs.append(ours)
        limit_runs.append(_limit(runc, export, image_tar, work / f"ours-{i}", work / f"limit-{i}", spec, root_mode,
                                 volume, volume_dir, pause))
        settle(pause)
        t0 = time.perf_counter()
        pm("container", "restore", "--import", str(export))
        podman_runs.append(time.perf_counter() - t0)
        pm("rm", "-f", "-t", "0", name)
        if volume:                      # podman's restore made the volume again: the next round needs it gone
            pm("volume", "rm", "-f", volume)
    ours, limit = _median(ours_runs), _median(limit_runs)
    podman_s = sorted(podman_runs)[(len(podman_runs) - 1) // 2]

    what = (f"rootfs diff {rootfs_mib} MiB + volume {volume_mib} MiB" if case == "big"
            else "the bare busybox container (the fixed cost)")
    print(f"\n{case}: restore --import, {what}, one podman archive"
          f"{f', the median of {repeat} rounds each' if repeat > 1 else ''} "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; a shared machine: noisy)")
    rows: list[tuple[str, Metered | float]] = [("ours", ours), ("limit", limit), ("podman", podman_s),
                                                ("inspect", inspect), ("floor", floor)]
    for label, m in rows:
        if isinstance(m, Metered):
            print(f"  {label:8} {m.wall:7.3f} s wall  {m.cpu:6.3f} s CPU   peak RSS {m.rss:6.1f} MiB")
        else:
            print(f"  {label:8} {m:7.3f} s wall")
    g = CASE_GOALS[case]
    print("  " + goals.check(f"{case}: ours/podman", ratio(ours.wall, podman_s), g["podman"]))
    print("  " + goals.check(f"{case}: ours/limit", ratio(ours.wall, limit.wall), g.get("limit")))
    print("  " + goals.check(f"{case}: inspect/floor (the archive path alone)", ratio(inspect.wall, floor.wall), None))
    print("  " + goals.check(f"{case}: peak RSS of ours", ours.rss, g["rss"], " MiB"))
    if not applied:
        print(f"{case}: ours did NOT apply the rootfs diff and the volume")
        return 1
    return 0


def _median(runs: list[Metered]) -> Metered:
    """The round with the median wall time (the lower middle one of an even count)."""
    return sorted(runs, key=lambda m: m.wall)[(len(runs) - 1) // 2]


def _ours(runc_ckpt: str, runc: Runc, pm: PodmanEnv, export: Path, image_tar: Path, bundle: Path,
          volume_dir: Path | None, rootfs_mib: int, pause: float) -> tuple[Metered, bool, dict, int]:
    """ours: a plain runc bundle holding the image; podman's volume root is where named volumes live.
    (its run, whether it applied the diff and the volume, the config.json it wrote, the rootfs mode)"""
    env = runc_ckpt_config(bundle.parent / f"runc-ckpt-{bundle.name}.yaml", bundle.parent / "state",
                           [str(pm.root / "volumes")])
    unpack(image_tar, bundle / "rootfs")
    settle(pause)
    ours = metered([runc_ckpt, "--root", str(runc.root), "restore", "--import", str(export), "--bundle",
                    str(bundle), "-d", OURS], env=env)
    applied = not rootfs_mib or (bundle / "rootfs" / "bigdata").is_dir()
    applied = applied and (volume_dir is None or volume_dir.is_dir())
    spec = json.loads((bundle / "config.json").read_text())
    root_mode = (bundle / "rootfs").stat().st_mode & 0o7777      # CRIU checks it
    runc.remove(OURS)
    if volume_dir is not None:
        shutil.rmtree(volume_dir.parent, ignore_errors=True)
    return ours, applied, spec, root_mode


def _limit(runc: Runc, export: Path, image_tar: Path, bundle: Path, limit_b: Path, spec: dict, root_mode: int,
           volume: str | None, volume_dir: Path | None, pause: float) -> Metered:
    """limit: unpack, untar the diff and the volume, runc restore with ours' config.json."""
    unpack(image_tar, limit_b / "rootfs")
    (limit_b / "rootfs").chmod(root_mode)
    if (bundle / ".runc-ckpt-binds").is_dir():     # hosts, resolv.conf... the spec points at
        shutil.copytree(bundle / ".runc-ckpt-binds", limit_b / ".runc-ckpt-binds", symlinks=True)
    doc = json.loads(json.dumps(spec).replace(str(bundle), str(limit_b)))
    doc.setdefault("linux", {})["cgroupsPath"] = f"/runc-ckpt-bench-{LIMIT}"   # not ours' (maybe busy)
    (limit_b / "config.json").write_text(json.dumps(doc))
    images = limit_b.parent / f"{limit_b.name}-import"
    images.mkdir()
    volume_step = ""
    if volume_dir is not None:
        volume_dir.mkdir(parents=True)
        volume_step = f"tar -x -f '{images}/volumes/{volume}.tar' -C '{volume_dir}' && "
    script = (f"zstd -q -dc '{export}' | tar -x -C '{images}' && "
              f"{{ ! [ -f '{images}/rootfs-diff.tar' ] || tar -x -f '{images}/rootfs-diff.tar' -C '{limit_b}/rootfs'; }} && "
              f"{volume_step}"
              f"{runc.binary} --root '{runc.root}' restore --image-path '{images}/checkpoint' "
              f"--work-path '{images}/work' --bundle '{limit_b}' -d {LIMIT}")
    settle(pause)
    limit = metered(["sh", "-c", script])
    runc.remove(LIMIT)
    if volume_dir is not None:
        shutil.rmtree(volume_dir.parent, ignore_errors=True)
    return limit


if __name__ == "__main__":
    run_main(main)
