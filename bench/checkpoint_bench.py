#!/usr/bin/env python3
"""Benchmark `runc-ckpt checkpoint --export` against podman's own checkpoint and against a floor.

Run as root, with a Python that can import runc_ckpt and the test helpers
(the project venv: pytest is needed for tests/podman_env.py):
    python bench/checkpoint_bench.py                        # modest sizes, a few minutes on 2 cores
    python bench/checkpoint_bench.py --full                 # the issue's sizes (about 10 GiB of disk)
    python bench/checkpoint_bench.py --scale 2              # every default size x2
    python bench/checkpoint_bench.py --cases memory,rootfs --size-mib 2048

Cases (default size; the issue's size): memory (256 MiB; 2 GiB of process
memory, a static C program that mallocs, fills and touches N MiB, then sleeps),
rootfs (512 MiB; 2 GiB of big files in the rootfs diff), smallfiles (5000;
20000 x 4 KiB files in the rootfs diff), volume (256 MiB; 1 GiB in a named
volume), usr (256 MiB; 1 GiB of the host's real /usr files in the rootfs diff),
files1k (20000; issue 12's 300000 and 1000000 x 1 KiB files, 1000 per
directory: goals ours/limit <= 1.5 and py RSS <= 100 MiB), tiny (the bare
busybox container: the fixed cost, goal ours/limit <= 1.2). For the
1M-file RSS case use --cases files1k --size-mib 1000000 --contenders ours.

For each case three contenders run one after another, on the same image
(busybox-static + the memory filler) and the same bytes:
  podman  a private podman (tests/podman_env.PodmanEnv: own root, runroot,
          config, ulimits, --network none, cgroupfs) whose runtime is the real
          runc: `podman container checkpoint --export F --compress zstd` is timed;
  ours    a plain runc bundle on an overlay rootfs under a private --root:
          `runc-ckpt --root R checkpoint --export F` (zstd level 3, default);
  limit   an equal runc container: `runc checkpoint` + `tar -cf - images diff
          volume | zstd -T0 -3` of the same bytes, both timed, summed.
Ours is started by a small meter process (see METER) so that peak RSS is
measured two ways: "py" is VmHWM of runc-ckpt's own Python process, read by
that process as it finishes (runc_ckpt.frontend.cli.main is called by a tiny
wrapper, exactly what the runc-ckpt-py entry point does); "tree" is the
meter's getrusage(RUSAGE_CHILDREN).ru_maxrss, the largest single process of
the whole call including runc and CRIU. Targets: ours/podman <= 0.5,
ours/limit <= 1.25, size ours/podman <= 1.0, py RSS <= 150 MiB. A missed
target prints MISSED; the exit code is 0 unless the bench itself failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from export_bench import pool  # noqa: E402  (the same semi-compressible data)

MIB = 1 << 20
DEFAULTS = {"memory": 256, "rootfs": 512, "smallfiles": 5000, "volume": 256, "usr": 256, "files1k": 20000,
            "tiny": 1}
NO_DATA = ("memory", "tiny")          # cases without files to write into the container
COUNTED = ("smallfiles", "files1k")   # sizes that are a number of files, not MiB
# Goals per case (issue 12 for files1k and tiny; the default ones from the earlier issues).
TARGETS = {"podman": 0.5, "limit": 1.25, "size": 1.0, "rss": 150.0}
CASE_TARGETS = {"files1k": {"limit": 1.5, "rss": 100.0}, "tiny": {"limit": 1.2}}
PODMAN_431 = {"memory": (2048, 6.4), "rootfs": (2048, 8.1), "smallfiles": (20000, 2.1), "files1k": (300000, 0.0),
              "tiny": (1, 0.0),
              "volume": (1024, 4.6), "usr": (1024, 11.4)}   # the figures: (size, seconds)
VOLUME = "benchvol"

# Fills N MiB with data that compresses about like a heap (a quarter of every
# page random, the rest text), touches it all, signals readiness with a file, sleeps.
FILLER_C = r"""
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    size_t n = strtoul(argv[1], 0, 10) << 20;
    unsigned char *p = malloc(n);
    static const char text[] = "GET /api/v1/items 200 OK user=4711 latency_ms=12 INFO trace=abc\n";
    unsigned long long x = 88172645463325252ULL;
    if (!p) return 1;
    for (size_t i = 0; i < n; i += 4096) {
        for (int j = 0; j < 1024; j += 8) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            *(unsigned long long *)(p + i + j) = x;
        }
        for (int j = 1024; j < 4096; j++) p[i + j] = text[(j + i / 4096) % (sizeof text - 1)];
    }
    close(open(argv[2], O_CREAT | O_WRONLY, 0644));
    for (;;) pause();
}
"""

# Runs runc-ckpt's Python entry point and leaves its peak RSS (VmHWM, KiB) in $BENCH_HWM.
WRAPPER = r"""
import os, sys
from runc_ckpt.frontend.cli import main
rc = main(sys.argv[1:])
with open("/proc/self/status") as f:
    hwm = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
with open(os.environ["BENCH_HWM"], "w") as f:
    f.write(hwm)
sys.exit(rc)
"""

# A small process that times a command and reports its children's largest ru_maxrss:
# a vfork()ed child's ru_maxrss starts from its parent's high-water mark, so the
# parent of the measured command must stay small, and this bench process is not.
METER = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
         "rc = subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL).returncode; "
         "print(rc, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


class BenchError(Exception):
    """A contender or a setup step failed: the case is reported as failed."""


def sh(*argv: str, **kw: object) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(list(argv), capture_output=True, text=True, stdin=subprocess.DEVNULL,
                         check=False, **kw)  # type: ignore[call-overload]
    if out.returncode != 0:
        raise BenchError(f"{' '.join(argv[:4])} ... exited {out.returncode}: {out.stderr.strip()[-800:]}")
    return out


def timed(*argv: str) -> float:
    os.sync()             # no writeback of fresh test data competing with the timed step
    t = time.perf_counter()
    sh(*argv)
    return time.perf_counter() - t


# ---------------------------------------------------------------- test data

def generate(case: str, size: int, dest: str) -> None:
    """The case's data under dest (run in a child process: it needs a big pool in memory)."""
    rng = random.Random(42)
    os.makedirs(dest)
    if case in ("rootfs", "volume"):
        data = pool(rng, 32 * MIB)
        per_file = 64
        left, i = size, 0
        while left > 0:
            with open(os.path.join(dest, f"big-{i:03d}.bin"), "wb") as f:
                for _ in range(min(per_file, left)):
                    off = rng.randrange(0, len(data) - MIB)
                    f.write(data[off:off + MIB])
            left -= per_file
            i += 1
    elif case in ("smallfiles", "files1k"):
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
        subprocess.run(f"tar -C / --null -T {listing} -cf - | tar -C {dest} -xf -", shell=True, check=True)
        os.unlink(listing)


def du_mib(path: str) -> float:
    return int(sh("du", "-sb", path).stdout.split()[0]) / MIB


# ---------------------------------------------------------------- image

def build_image(work: Path) -> tuple[Path, Path]:
    """(image tarball for podman, the same tree unpacked as the bundles' overlay lower dir)."""
    from tests.podman_env import build_busybox_tar
    filler_src = work / "memfill.c"
    filler_src.write_text(FILLER_C)
    filler = work / "memfill"
    sh("gcc", "-static", "-O2", "-o", str(filler), str(filler_src))
    tar_path = build_busybox_tar(work / "image.tar")
    with tarfile.open(tar_path, "a") as tar:
        tar.add(str(filler), arcname="bin/memfill")
    lower = work / "lower"
    lower.mkdir()
    sh("tar", "-C", str(lower), "-xf", str(tar_path))
    return tar_path, lower


# ---------------------------------------------------------------- contenders

@dataclass
class Result:
    seconds: float
    size: int
    rss_py: float = 0.0      # MiB
    rss_tree: float = 0.0    # MiB
    runtime: float = 0.0     # seconds of it spent in `runc checkpoint` (--print-stats' runtime_checkpoint_duration)


def _command(case: str, size: int) -> list[str]:
    return ["/bin/memfill", str(size), "/ready"] if case == "memory" else ["/bin/sleep", "1000000"]


def _wait_file(path: Path, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out waiting for {what}")
        time.sleep(0.1)


def run_podman(env, case: str, size: int, src: str, out: str) -> Result:
    def pm(*args: str) -> str:
        done = subprocess.run(env.argv(*args), capture_output=True, text=True, env=env.env,
                              stdin=subprocess.DEVNULL, check=False, timeout=1800)
        if done.returncode != 0:
            raise BenchError(f"podman {' '.join(args[:3])} exited {done.returncode}: {done.stderr.strip()}")
        return done.stdout.strip()

    vol = []
    if case == "volume":
        pm("volume", "create", VOLUME)
        vol = ["-v", f"{VOLUME}:/data"]
    pm("create", "--name", case, *vol, env.image, *_command(case, size))
    if case == "volume":
        sh("cp", "-a", src + "/.", str(env.volume_dir(VOLUME)))
    elif case not in NO_DATA:
        merged = pm("mount", case)
        sh("cp", "-a", src, os.path.join(merged, "bench"))
        pm("unmount", case)
    pm("start", case)
    if case == "memory":
        upper = Path(pm("inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", case))
        _wait_file(upper / "ready", "podman's memory filler")
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
class Runc:
    """Plain runc bundles on overlay under a private --root, as tests/integration/conftest.py builds them."""

    work: Path
    lower: Path
    runc: str
    root: Path
    made: int = 0
    mounted: list[Path] | None = None

    def discard(self) -> None:
        """Unmount and delete the bundles made so far: the full sizes need the disk back."""
        for rootfs in self.mounted or []:
            subprocess.run(["umount", "-l", str(rootfs)], capture_output=True, check=False)
            shutil.rmtree(rootfs.parent, ignore_errors=True)
        self.mounted = []
        for d in self.work.glob("volumes-*"):
            shutil.rmtree(d, ignore_errors=True)
        for d in (*self.work.glob("images-*"), *self.work.glob("criu-work-*")):
            shutil.rmtree(d, ignore_errors=True)

    def bundle(self, case: str, size: int, src: str) -> tuple[Path, Path, str | None]:
        """(bundle dir, its upper dir, the volume data dir or None), filled with the case's data."""
        from tests.integration.conftest import make_spec, mount_overlay
        self.made += 1
        base = self.work / f"bundle-{self.made}"
        upper, wk, rootfs = base / "upper", base / "work", base / "rootfs"
        for d in (upper, wk, rootfs):
            d.mkdir(parents=True)
        mount_overlay(self.lower, upper, wk, rootfs)
        self.mounted = [*(self.mounted or []), rootfs]
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
        cid = f"{case}-{self.made}"
        # All stdio /dev/null: CRIU cannot dump a host file or pipe, and the container would hold ours open.
        code = subprocess.run([self.runc, "--root", str(self.root), "run", "-d", "--bundle", str(bundle), cid],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              check=False).returncode
        if code != 0:
            raise BenchError(f"runc run {cid} exited {code} (try it by hand on {bundle})")
        if case == "memory":
            _wait_file(upper / "ready", "the memory filler")
        return cid

    def remove(self, cid: str) -> None:
        subprocess.run([self.runc, "--root", str(self.root), "delete", "--force", cid],
                       capture_output=True, check=False)


def run_ours(rc: Runc, case: str, size: int, src: str, out: str) -> Result:
    bundle, upper, voldata = rc.bundle(case, size, src)
    config = rc.work / f"runc-ckpt-{rc.made}.yaml"
    roots = [os.path.dirname(os.path.dirname(voldata))] if voldata else []
    config.write_text(f"state_dir: {rc.work / 'state'}\nvolume_roots: {json.dumps(roots)}\n")
    cid = rc.start(case, bundle, upper)
    hwm = rc.work / "hwm"
    env = dict(os.environ, RUNC_CKPT_CONFIG=str(config), BENCH_HWM=str(hwm))
    os.sync()
    done = subprocess.run([sys.executable, "-c", METER, sys.executable, "-c", WRAPPER, "--root", str(rc.root),
                           "checkpoint", "--print-stats", "--export", out, cid], capture_output=True, text=True, env=env,
                          check=False)
    rc.remove(cid)
    try:
        code, seconds, tree_kib = done.stdout.split()[-3:]
    except ValueError:
        raise BenchError(f"runc-ckpt meter failed: {done.stderr.strip()}") from None
    if code != "0":
        logs = sorted((rc.work / "state").glob("*/work/dump.log"))
        tail = [l for l in (logs[-1].read_text(errors="replace").splitlines() if logs else [])
                if "Error" in l or "Warn" in l][-6:]
        raise BenchError(f"runc-ckpt checkpoint exited {code}: {done.stderr.strip()}\n" + "\n".join(tail))
    printed = done.stdout.rsplit("\n", 2)[0]       # the JSON, before the meter's own line
    return Result(float(seconds), os.path.getsize(out), int(hwm.read_text()) / 1024, int(tree_kib) / 1024,
                  _runtime_seconds(printed))


def run_limit(rc: Runc, case: str, size: int, src: str, out: str) -> Result:
    bundle, upper, voldata = rc.bundle(case, size, src)
    cid = rc.start(case, bundle, upper)
    images, wk = rc.work / f"images-{rc.made}", rc.work / f"criu-work-{rc.made}"
    try:
        t_dump = timed(rc.runc, "--root", str(rc.root), "checkpoint", "--image-path", str(images),
                       "--work-path", str(wk), cid)
    finally:
        rc.remove(cid)
    parts = f"-C {images} . -C {upper} ." + (f" -C {voldata} ." if voldata else "")
    t_pack = timed("sh", "-c", f"tar -cf - {parts} | zstd -q -T0 -3 > {out}")
    return Result(t_dump + t_pack, os.path.getsize(out), runtime=t_dump)


# ---------------------------------------------------------------- report

def verdict(value: float, target: float) -> str:
    return "ok" if value <= target else "MISSED"


def _ratio(name: str, value: float, goal: float) -> str:
    return f"{name} {value:5.2f} (goal <= {goal:g}: {verdict(value, goal)})"


def report(rows: list[tuple[str, int, Result | str, Result | None, Result | None]]) -> None:
    """One block per case: times, each ratio and peak RSS against that case's goals."""
    print()
    for label, size, pod, ours, lim in rows:
        if isinstance(pod, str):
            print(f"{label:18} FAILED: {pod}")
            continue
        assert ours is not None
        goals = {**TARGETS, **CASE_TARGETS.get(label.split()[0], {})}
        times = [f"ours {ours.seconds:.2f} s"] + [f"{n} {r.seconds:.2f} s" for n, r in (("podman", pod), ("limit", lim))
                                                  if r is not None]
        print(f"{label:18} " + ", ".join(times))
        ratios = []
        if pod is not None:
            ratios += [_ratio("ours/podman", ours.seconds / pod.seconds, goals["podman"]),
                       _ratio("size ours/podman", ours.size / pod.size, goals["size"])]
        if lim is not None:
            ratios.append(_ratio("ours/limit", ours.seconds / lim.seconds, goals["limit"]))
        ratios.append(f"RSS py {ours.rss_py:.1f} MiB (goal <= {goals['rss']:g}: {verdict(ours.rss_py, goals['rss'])}),"
                      f" tree {ours.rss_tree:.0f} MiB")
        print(f"{'':18} " + "; ".join(ratios))
        ref_size, ref_s = PODMAN_431[label.split()[0]]
        sizes = [f"{n} {r.size / MIB:.1f}" for n, r in (("ours", ours), ("podman", pod), ("limit", lim)) if r]
        print(f"{'':18} archives MiB: {', '.join(sizes)}" + (f"; issue's podman s, scaled: {ref_s * size / ref_size:.1f}"
                                                              if ref_s else ""))
        parts = [f"{n} {r.runtime:.2f}/{r.seconds - r.runtime:.2f}" for n, r in (("ours", ours), ("podman", pod),
                                                                                   ("limit", lim)) if r]
        print(f"{'':18} runc checkpoint / the rest, s: {', '.join(parts)}")
    print("RSS py = runc-ckpt's Python process (VmHWM); tree = largest process incl. runc/CRIU. "
          "A shared machine: wall times are noisy.")


# ---------------------------------------------------------------- main

def _mounts_under(prefix: str) -> list[str]:
    with open("/proc/self/mounts", encoding="utf-8") as f:
        points = {line.split()[1] for line in f}
    return sorted((p for p in points if p == prefix or p.startswith(prefix + "/")), key=len, reverse=True)


def cleanup(work: Path, rc: Runc | None, env) -> None:
    if env is not None:
        env.teardown()
    if rc is not None and rc.root.is_dir():
        for cid in os.listdir(rc.root):
            rc.remove(cid)
    for point in _mounts_under(str(work)):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    shutil.rmtree(work, ignore_errors=True)


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(DEFAULTS), help=f"comma-separated, of {', '.join(DEFAULTS)}")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every default size")
    ap.add_argument("--full", action="store_true", help="the issue's sizes: 2 GiB, 2 GiB, 20000, 1 GiB, 1 GiB")
    ap.add_argument("--size-mib", type=int, default=None,
                    help="size of every chosen case (MiB; for smallfiles: the number of files)")
    ap.add_argument("--dir", default="/var/tmp", help="where the work directory goes")
    ap.add_argument("--contenders", default="podman,ours,limit",
                    help="which to run besides ours (e.g. just `ours` for the 1M-file RSS case)")
    ap.add_argument("--generate", nargs=3, metavar=("CASE", "SIZE", "DEST"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.generate:
        generate(args.generate[0], int(args.generate[1]), args.generate[2])
        return 0
    cases = [c for c in args.cases.split(",") if c]
    unknown = set(cases) - set(DEFAULTS)
    if unknown:
        ap.error(f"unknown cases: {', '.join(sorted(unknown))}")
    for tool in ("podman", "conmon", "runc", "criu", "gcc", "tar", "zstd", "busybox"):
        if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin") is None:
            print(f"{tool} is not installed: run contrib/install-deps.sh", file=sys.stderr)
            return 1
    from tests.podman_env import PodmanEnv
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _raise_interrupt)      # clean up on any of them (SIGINT even if inherited ignored)
    work = Path(tempfile.mkdtemp(prefix="ckpt-bench-", dir=args.dir))
    env = rc = None
    rows: list = []
    try:
        real_runc = shutil.which("runc", path="/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin") or "runc"
        image_tar, lower = build_image(work)
        # podman's runtime is the real runc (under a private --root): podman's own checkpoint code path.
        # Not under work: podman refuses a runroot path longer than 50 characters.
        env = PodmanEnv(Path(tempfile.mkdtemp(prefix="rcpb-", dir="/tmp")), real_runc)
        env.import_image(image_tar)
        rc = Runc(work, lower, real_runc, work / "runc-root")
        rc.root.mkdir()
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
              f"podman's runtime: {real_runc} (private root {env.runc_root})", flush=True)
        for case in cases:
            size = args.size_mib or (PODMAN_431[case][0] if args.full else max(1, round(DEFAULTS[case] * args.scale)))
            label = "tiny" if case == "tiny" else f"{case} {size}{'' if case in COUNTED else 'M'}"
            src = str(work / f"src-{case}")
            try:
                if case not in NO_DATA:
                    subprocess.run([sys.executable, __file__, "--generate", case, str(size), src], check=True)
                    print(f"{label}: {du_mib(src):.0f} MiB of data", flush=True)
                pod = lim = None
                if "podman" in args.contenders:
                    pod = run_podman(env, case, size, src, str(work / f"{case}-podman.tar.zst"))
                    print(f"{label}: podman {pod.seconds:.2f}s", flush=True)
                ours = run_ours(rc, case, size, src, str(work / f"{case}-ours.tar.zst"))
                print(f"{label}: ours {ours.seconds:.2f}s", flush=True)
                rc.discard()            # the disk back before the next copy of a big tree
                if "limit" in args.contenders:
                    lim = run_limit(rc, case, size, src, str(work / f"{case}-limit.tar.zst"))
                    print(f"{label}: limit {lim.seconds:.2f}s", flush=True)
                rows.append((label, size, pod, ours, lim))
            except BenchError as e:
                rows.append((label, size, str(e), None, None))
            finally:
                # free the disk as we go: the full sizes need several copies of each case's data
                for p in work.glob(f"{case}-*.tar.zst"):
                    p.unlink()
                shutil.rmtree(src, ignore_errors=True)
                rc.discard()
        report(rows)
    except KeyboardInterrupt:
        print("interrupted: cleaning up", file=sys.stderr)
        return 130
    except BaseException as e:      # pytest.fail() from tests.podman_env is a BaseException
        if isinstance(e, SystemExit):
            raise
        print(f"checkpoint bench failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)       # the cleanup itself must finish
        cleanup(work, rc, env)
    return 1 if any(isinstance(r[2], str) for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
