#!/usr/bin/env python3
"""Benchmark `runc-ckpt checkpoint --export` against podman's own checkpoint and against a floor.

Run as root (runc-ckpt is driven through its command line only: the venv's
`runc-ckpt`, or --runc-ckpt):
    python bench/checkpoint_bench.py                        # modest sizes, a few minutes on 2 cores
    python bench/checkpoint_bench.py --full                 # the issue's sizes (about 10 GiB of disk)
    python bench/checkpoint_bench.py --scale 2              # every default size x2
    python bench/checkpoint_bench.py --cases memory,rootfs --size-mib 2048
    python bench/checkpoint_bench.py --smoke                # every case at a tiny size, no goal checks
    python bench/checkpoint_bench.py --cases tiny --repeat 9   # the fixed cost: medians of 9 interleaved rounds
    python bench/checkpoint_bench.py --cases files1k,smallfiles --sizes files1k=300000,smallfiles=50000 \
        --contenders ours,limit                             # issue 22's many-file exports

Cases (default size; the issue's size): memory (256 MiB; 2 GiB of process
memory, a static C program that mallocs, fills and touches N MiB, then sleeps),
rootfs (512 MiB; 2 GiB of big files in the rootfs diff), smallfiles (5000;
20000 x 4 KiB files in the rootfs diff), volume (256 MiB; 1 GiB in a named
volume), usr (256 MiB; 1 GiB of the host's real /usr files in the rootfs diff),
files1k (20000; issue 12's 300000 and 1000000 x 1 KiB files, 1000 per
directory: goals ours/limit <= 1.25 and RSS <= 100 MiB, issue 22; smallfiles has the
same goals, issue 22's size is 50000), tiny (the bare
busybox container: the fixed cost, goals ours/podman <= 1.0, ours/limit <= 1.5). For the
1M-file RSS case use --cases files1k --size-mib 1000000 --contenders ours.

For each case three contenders run one after another, on the same image
(busybox-static + the memory filler) and the same bytes:
  podman  a private podman (own graphroot, runroot, containers.conf, ulimits,
          --network none, cgroupfs; bench/_common.PodmanEnv) whose runtime is the
          real runc: `podman container checkpoint --export F --compress zstd` is timed;
  ours    a plain runc bundle on an overlay rootfs under a private --root:
          `runc-ckpt --root R checkpoint --print-stats --export F` (zstd level 3, default);
  limit   an equal runc container: `runc checkpoint` + `tar -cf - images diff
          volume | zstd -T0 -3` of the same bytes, both timed, summed.
Ours is started by a small meter process (bench/_common.METER): wall time and
peak RSS, getrusage(RUSAGE_CHILDREN).ru_maxrss, the largest single process of
the whole call (runc-ckpt's Python, runc or CRIU): the RSS goal is checked on
it, an upper bound of runc-ckpt's own. Goals: ours/podman <= 0.5,
ours/limit <= 1.25, size ours/podman <= 1.0, RSS <= 150 MiB (per-case goals
above). Exit 1 if a case failed, 3 if a goal was missed (never in --smoke).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _common import (
    MIB,
    RUN,
    BenchError,
    Goals,
    PodmanEnv,
    Runc,
    add_common_args,
    build_memfill,
    busybox_tar,
    check_runc_ckpt,
    du_mib,
    make_spec,
    metered,
    mount_overlay,
    pool,
    ratio,
    real_runc,
    require,
    run_main,
    runc_ckpt_config,
    scaled,
    sh,
    timed,
    umount_under,
    unpack,
    wait_file,
    write_pool_files,
)

DEFAULTS = {"memory": 256, "rootfs": 512, "smallfiles": 5000, "volume": 256, "usr": 256, "files1k": 20000,
            "tiny": 1}
SMOKE = {"memory": 8, "rootfs": 4, "smallfiles": 100, "volume": 4, "usr": 4, "files1k": 100, "tiny": 1}
NO_DATA = ("memory", "tiny")          # cases without files to write into the container
COUNTED = ("smallfiles", "files1k")   # sizes that are a number of files, not MiB
# Goals per case (issue 12 for files1k and tiny; the default ones from the earlier issues).
TARGETS = {"podman": 0.5, "limit": 1.25, "size": 1.0, "rss": 150.0}
# Issue 22: files1k (300k x 1 KiB) and smallfiles (50k x 4 KiB) at <= 1.25 x the limit in <= 100 MiB;
# tiny <= 1.0 x podman, <= 1.5 x the limit.
CASE_TARGETS = {"files1k": {"limit": 1.25, "rss": 100.0}, "smallfiles": {"limit": 1.25, "rss": 100.0},
                "tiny": {"podman": 1.0, "limit": 1.5}}
PODMAN_431 = {"memory": (2048, 6.4), "rootfs": (2048, 8.1), "smallfiles": (20000, 2.1), "files1k": (300000, 0.0),
              "tiny": (1, 0.0),
              "volume": (1024, 4.6), "usr": (1024, 11.4)}   # the figures: (size, seconds)
VOLUME = "benchvol"



# ---------------------------------------------------------------- test data

def generate(case: str, size: int, dest: str) -> None:
    """The case's data under dest."""
    os.makedirs(dest)
    if case in ("rootfs", "volume"):
        write_pool_files(dest, size)
    elif case in ("smallfiles", "files1k"):
        rng = random.Random(42)
        data = pool(rng, 8 * MIB)
        per_file = 4096 if case == "smallfiles" else 1024
        for i in range(size):
            d = os.path.join(dest, f"d{i // 1000:04d}")
            if i % 1000 == 0:
                os.makedirs(d)
            off = rng.randrange(0, len(data) - per_file)
            with open(os.path.join(d, f"f{i:07d}.txt"), "wb") as f:
                f.write(data[off:off + per_file])
    elif case == "usr":
        names, total = [], 0
        for top, dirs, files in os.walk("/usr"):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(top, name)
                if os.path.isfile(path) and not os.path.islink(path):
                    names.append(path.lstrip("/"))
                    total += os.path.getsize(path)
                    if total >= size * MIB:
                        break
            if total >= size * MIB:
                break
        listing = dest + ".list"
        with open(listing, "wb") as f:
            f.write(b"\0".join(n.encode() for n in names) + b"\0")
        sh("sh", "-c", f"tar -C / --null -T '{listing}' -cf - | tar -C '{dest}' -xf -")
        os.unlink(listing)


# ---------------------------------------------------------------- image

def build_image(work: Path) -> tuple[Path, Path]:
    """(image tarball for podman, the same tree unpacked as the bundles' overlay lower dir)."""
    tar_path = busybox_tar(work / "image.tar", {"bin/memfill": str(build_memfill(work))})
    return tar_path, unpack(tar_path, work / "lower")


# ---------------------------------------------------------------- contenders

@dataclass
class Result:
    seconds: float
    size: int
    rss: float = 0.0         # MiB: the largest process of the call's tree (ours only)
    runtime: float = 0.0     # seconds of it spent in `runc checkpoint` (--print-stats' runtime_checkpoint_duration)


def _command(case: str, size: int) -> list[str]:
    return ["/bin/memfill", str(size), "/ready"] if case == "memory" else ["/bin/sleep", "1000000"]


def run_podman(pm: PodmanEnv, case: str, size: int, src: str, out: str) -> Result:
    vol = []
    if case == "volume":
        pm("volume", "create", VOLUME)
        vol = ["-v", f"{VOLUME}:/data"]
    pm("create", "--name", case, *vol, pm.image, *_command(case, size))
    if case == "volume":
        sh("cp", "-a", src + "/.", str(pm.volume_dir(VOLUME)))
    elif case not in NO_DATA:
        merged = pm("mount", case)
        sh("cp", "-a", src, os.path.join(merged, "bench"))
        pm("unmount", case)
    pm("start", case)
    if case == "memory":
        upper = Path(pm("inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", case))
        wait_file(upper / "ready", "podman's memory filler")
    os.sync()
    t = time.perf_counter()
    printed = pm("container", "checkpoint", "--print-stats", "--export", out, "--compress", "zstd", case)
    seconds = time.perf_counter() - t
    pm("rm", "-f", "-t", "0", case)
    if case == "volume":
        pm("volume", "rm", "-f", VOLUME)
    return Result(seconds, os.path.getsize(out), runtime=_runtime_seconds(printed))


def _runtime_seconds(print_stats: str) -> float:
    """runtime_checkpoint_duration (the `runc checkpoint` call) from --print-stats' JSON, in seconds."""
    doc = json.loads(print_stats)
    return sum(c["runtime_checkpoint_duration"] for c in doc["container_statistics"]) / 1e6


@dataclass
class Bundles:
    """Plain runc bundles on overlay under a private --root."""

    work: Path
    lower: Path
    runc: Runc
    made: int = 0

    def discard(self) -> None:
        """Unmount and delete the bundles made so far: the full sizes need the disk back."""
        self.runc.remove_all()
        for d in self.work.glob("bundle-*"):
            umount_under(d)
            shutil.rmtree(d, ignore_errors=True)
        for d in (*self.work.glob("volumes-*"), *self.work.glob("images-*"), *self.work.glob("criu-work-*")):
            shutil.rmtree(d, ignore_errors=True)

    def bundle(self, case: str, size: int, src: str) -> tuple[Path, Path, str | None]:
        """(bundle dir, its upper dir, the volume data dir or None), filled with the case's data."""
        self.made += 1
        base = self.work / f"bundle-{self.made}"
        upper, wk, rootfs = base / "upper", base / "work", base / "rootfs"
        for d in (upper, wk, rootfs):
            d.mkdir(parents=True)
        mount_overlay(self.lower, upper, wk, rootfs)
        spec = make_spec(_command(case, size))
        voldata = None
        if case == "volume":
            voldata = self.work / f"volumes-{self.made}" / VOLUME / "_data"
            voldata.mkdir(parents=True)
            sh("cp", "-a", src + "/.", str(voldata))
            spec["mounts"].append({"destination": "/data", "type": "bind", "source": str(voldata),
                                   "options": ["rbind", "rw"]})
        elif case not in NO_DATA:
            sh("cp", "-a", src, str(upper / "bench"))
        (base / "config.json").write_text(json.dumps(spec))
        return base, upper, None if voldata is None else str(voldata)

    def start(self, case: str, bundle: Path, upper: Path) -> str:
        cid = f"{case}-{self.made}-{RUN}"
        self.runc.run_detached(bundle, cid)
        if case == "memory":
            wait_file(upper / "ready", "the memory filler")
        return cid


def run_ours(rc: Bundles, runc_ckpt: str, case: str, size: int, src: str, out: str) -> Result:
    bundle, upper, voldata = rc.bundle(case, size, src)
    roots = [os.path.dirname(os.path.dirname(voldata))] if voldata else []
    env = runc_ckpt_config(rc.work / f"runc-ckpt-{rc.made}.yaml", rc.work / "state", roots)
    cid = rc.start(case, bundle, upper)
    try:
        m = metered([runc_ckpt, "--root", str(rc.runc.root), "checkpoint", "--print-stats", "--export", out, cid],
                    env=env)
    except BenchError as e:
        logs = sorted((rc.work / "state").glob("*/work/dump.log"))
        tail = [line for line in (logs[-1].read_text(errors="replace").splitlines() if logs else [])
                if "Error" in line or "Warn" in line][-6:]
        raise BenchError("\n".join([str(e), *tail])) from None
    finally:
        rc.runc.remove(cid)
    return Result(m.wall, os.path.getsize(out), m.rss, _runtime_seconds(m.stdout))


def run_limit(rc: Bundles, case: str, size: int, src: str, out: str) -> Result:
    bundle, upper, voldata = rc.bundle(case, size, src)
    cid = rc.start(case, bundle, upper)
    images, wk = rc.work / f"images-{rc.made}", rc.work / f"criu-work-{rc.made}"
    try:
        t_dump = timed(*rc.runc.argv("checkpoint", "--image-path", str(images), "--work-path", str(wk), cid))
    finally:
        rc.runc.remove(cid)
    parts = f"-C '{images}' . -C '{upper}' ." + (f" -C '{voldata}' ." if voldata else "")
    t_pack = timed("sh", "-c", f"tar -cf - {parts} | zstd -q -T0 -3 > '{out}'")
    return Result(t_dump + t_pack, os.path.getsize(out), runtime=t_dump)


# ---------------------------------------------------------------- report

def median(results: list[Result]) -> Result | None:
    """The round with the median time (the lower middle one of an even count); None: the contender did not run."""
    if not results:
        return None
    return sorted(results, key=lambda r: r.seconds)[(len(results) - 1) // 2]


def report(rows: list[tuple[str, int, Result | str, Result | None, Result | None]], goals: Goals) -> None:
    """One block per case: times, each ratio and peak RSS against that case's goals."""
    print()
    for label, size, pod, ours, lim in rows:
        if isinstance(pod, str):
            print(f"{label:18} FAILED: {pod}")
            continue
        assert ours is not None
        case = label.split()[0]
        g = {**TARGETS, **CASE_TARGETS.get(case, {})}
        times = [f"ours {ours.seconds:.2f} s"] + [f"{n} {r.seconds:.2f} s" for n, r in (("podman", pod), ("limit", lim))
                                                  if r is not None]
        print(f"{label:18} " + ", ".join(times))
        ratios = []
        if pod is not None:
            ratios += [goals.check(f"{case}: ours/podman", ratio(ours.seconds, pod.seconds), g["podman"]),
                       goals.check(f"{case}: size ours/podman", ratio(ours.size, pod.size), g["size"])]
        if lim is not None:
            ratios.append(goals.check(f"{case}: ours/limit", ratio(ours.seconds, lim.seconds), g["limit"]))
        ratios.append(goals.check(f"{case}: peak RSS", ours.rss, g["rss"], " MiB"))
        for line in ratios:
            print(f"{'':18} {line}")
        ref_size, ref_s = PODMAN_431[case]
        sizes = [f"{n} {r.size / MIB:.1f}" for n, r in (("ours", ours), ("podman", pod), ("limit", lim)) if r]
        print(f"{'':18} archives MiB: {', '.join(sizes)}" + (f"; issue's podman s, scaled: {ref_s * size / ref_size:.1f}"
                                                              if ref_s else ""))
        parts = [f"{n} {r.runtime:.2f}/{r.seconds - r.runtime:.2f}" for n, r in (("ours", ours), ("podman", pod),
                                                                                   ("limit", lim)) if r]
        print(f"{'':18} runc checkpoint / the rest, s: {', '.join(parts)}")
    print("peak RSS = the largest process of ours' call (runc-ckpt's Python, runc or CRIU). "
          "A shared machine: wall times are noisy.")


# ---------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(DEFAULTS), help=f"comma-separated, of {', '.join(DEFAULTS)}")
    ap.add_argument("--full", action="store_true", help="the issue's sizes: 2 GiB, 2 GiB, 20000, 1 GiB, 1 GiB")
    ap.add_argument("--size-mib", type=int, default=None,
                    help="size of every chosen case (MiB; for smallfiles: the number of files)")
    ap.add_argument("--sizes", default="", help="per-case sizes, e.g. files1k=300000,smallfiles=50000 "
                    "(over --size-mib, --full and --smoke)")
    ap.add_argument("--dir", default="/var/tmp", help="where the work directory goes")
    ap.add_argument("--repeat", type=int, default=1,
                    help="rounds of every contender per case, interleaved; each one's median round is reported "
                         "(a tiny checkpoint's single calls swing by +-50 ms on a shared 2-core machine)")
    ap.add_argument("--contenders", default="podman,ours,limit",
                    help="which to run besides ours (e.g. just `ours` for the 1M-file RSS case)")
    add_common_args(ap)
    args = ap.parse_args()
    runc_ckpt = check_runc_ckpt(args.runc_ckpt)
    cases = [c for c in args.cases.split(",") if c]
    sizes = {k: int(v) for k, _, v in (p.partition("=") for p in args.sizes.split(",") if p)}
    unknown = (set(cases) | set(sizes)) - set(DEFAULTS)
    if unknown:
        ap.error(f"unknown cases: {', '.join(sorted(unknown))}")
    if args.repeat < 1:
        ap.error("--repeat takes a number of rounds, at least 1")
    require("podman", "conmon", "runc", "criu", "gcc", "tar", "zstd", "busybox")
    goals = Goals(smoke=args.smoke)
    work = Path(tempfile.mkdtemp(prefix="ckpt-bench-", dir=args.dir))
    pm: PodmanEnv | None = None
    rc: Bundles | None = None
    rows: list = []
    try:
        runc = real_runc()
        image_tar, lower = build_image(work)
        if "podman" in args.contenders:
            # podman's runtime is the real runc (under a private --root): podman's own code path.
            # Not under work: podman refuses a runroot path longer than 50 characters.
            pm = PodmanEnv(Path(tempfile.mkdtemp(prefix="rcpb-", dir="/tmp")), runc)
            pm.import_image(image_tar)
        rc = Bundles(work, lower, Runc(work / "runc-root", runc))
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; runc {runc}; runc-ckpt {runc_ckpt}"
              + (f"; each contender's median of {args.repeat} interleaved rounds" if args.repeat > 1 else ""),
              flush=True)
        # Untimed: runc-ckpt caches per-host tool answers in its state dir (runtime.hostcache), as any node
        # has after its first checkpoint; without this the first case alone would pay for them.
        run_ours(rc, runc_ckpt, "tiny", 1, "", str(work / "warm-up.tar.zst"))
        rc.discard()
        for case in cases:
            if case in sizes:
                size = sizes[case]
            elif args.size_mib:
                size = args.size_mib
            elif args.smoke:
                size = SMOKE[case]
            elif args.full:
                size = PODMAN_431[case][0]
            else:
                size = scaled(DEFAULTS[case], args.scale)
            label = "tiny" if case == "tiny" else f"{case} {size}{'' if case in COUNTED else 'M'}"
            src = str(work / f"src-{case}")
            try:
                if case not in NO_DATA:
                    generate(case, size, src)
                    print(f"{label}: {du_mib(src):.0f} MiB of data", flush=True)
                pods, ourss, lims = [], [], []
                for _ in range(args.repeat):
                    if pm is not None:
                        pods.append(run_podman(pm, case, size, src, str(work / f"{case}-podman.tar.zst")))
                        print(f"{label}: podman {pods[-1].seconds:.2f}s", flush=True)
                    ourss.append(run_ours(rc, runc_ckpt, case, size, src, str(work / f"{case}-ours.tar.zst")))
                    print(f"{label}: ours {ourss[-1].seconds:.2f}s", flush=True)
                    rc.discard()            # the disk back before the next copy of a big tree
                    if "limit" in args.contenders:
                        lims.append(run_limit(rc, case, size, src, str(work / f"{case}-limit.tar.zst")))
                        print(f"{label}: limit {lims[-1].seconds:.2f}s", flush=True)
                    for p in work.glob(f"{case}-*.tar.zst"):
                        p.unlink()
                rows.append((label, size, median(pods), median(ourss), median(lims)))
            except (BenchError, subprocess.SubprocessError) as e:
                rows.append((label, size, str(e), None, None))
            finally:
                # free the disk as we go: the full sizes need several copies of each case's data
                for p in work.glob(f"{case}-*.tar.zst"):
                    p.unlink()
                shutil.rmtree(src, ignore_errors=True)
                rc.discard()
        report(rows, goals)
    finally:
        if pm is not None:
            pm.teardown()
        if rc is not None:
            rc.discard()
            rc.runc.remove_all()
        umount_under(work)
        shutil.rmtree(work, ignore_errors=True)
    if any(isinstance(r[2], str) for r in rows):
        return 1
    return goals.exit_code()


if __name__ == "__main__":
    run_main(main)
