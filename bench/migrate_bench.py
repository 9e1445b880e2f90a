#!/usr/bin/env python3
"""Live migration downtime between two simulated hosts, side by side, in one run.

Host A and host B each have their own runc --root, runc-ckpt state dir and
config, bundle and overlay rootfs (over the same busybox image). The
container is a Python process (the host's /usr bind-mounted read-only)
holding --mem-mib of memory (half random, half a repeated byte) and a
rootfs diff of --diff-mib in 16 MiB files or --files small files; every
10 ms it appends the wall-clock time to a stamp log on a host directory.
Downtime is the largest gap between two stamps: from the last one before the
freeze to the first one the process writes on the target.

The stamps are wall-clock time (time.time(), CLOCK_REALTIME), never
CLOCK_MONOTONIC or /proc/uptime: CRIU restores the process into a time
namespace whose monotonic clock is offset, and the two sides must share one
clock.

Transfers go over real TCP connections on 127.0.0.1 through a relay in this
process that paces the forward direction to --rate-mbit (default 1000, 0:
unpaced) with a token bucket: credit accrues at the rate, capped at one burst
(256 KiB), so a link that sat idle (phase 1 done, CRIU dumping) earns no
credit beyond that burst and cannot then send faster than the rate. The back
channel passes untouched. runc-ckpt is driven through its command line only
(the venv's `runc-ckpt`, or --runc-ckpt). Methods:
  podman     podman checkpoint --export, copy over the link, podman restore --import
             (a private podman, bench/_common.PodmanEnv, runtime the real runc; --no-podman skips it)
  3-step     runc-ckpt checkpoint --export FILE, copy over the link, restore --import FILE
  stream     checkpoint --export - | link | restore --import -
  two-phase  the stream with --pre-copy --handshake (rootfs and volumes sent before the freeze)
  limit      runc checkpoint + runc restore of the same container on local disk, no rootfs
Goals: two-phase <= 0.25x podman's three steps, and <= 1.5x the limit on the big case.
Exit 3 if a goal is missed (never in --smoke).

Usage: bench/migrate_bench.py [--mem-mib N] [--diff-mib N] [--files N] [--no-podman] [--rate-mbit R]
                              [--compress zstd|gzip|none] [--only 3-step,stream,two-phase,podman]
                              [--smoke] [--scale F] [--runc-ckpt PATH]
The issue's cases: --mem-mib 1024 --diff-mib 1024, and --mem-mib 64 --files 50000.
Defaults are small (64 MiB memory, 64 MiB diff) so that a run takes a minute;
--smoke: 8 MiB memory, 4 MiB diff and 200 files, short stamp waits, no goal checks.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from _common import (
    RUN,
    BenchError,
    Goals,
    PodmanEnv,
    Runc,
    add_common_args,
    busybox_tar,
    check_runc_ckpt,
    make_spec,
    mount_overlay,
    ratio,
    real_runc,
    require,
    run_main,
    runc_ckpt_config,
    scaled,
    umount_under,
    unpack,
    write_half_random,
)

CID = f"mig-{RUN}"
HOST_MOUNTS = [("/usr", "/usr"), ("/usr/lib", "/lib"), ("/usr/lib64", "/lib64")]
# Every 10 ms, the wall clock (time.time(): CLOCK_REALTIME, which no time namespace offsets).
WORKLOAD = """
import os, time
n = {mem} << 19
mem = bytearray(os.urandom(n)) + bytearray(b"\\x01") * n
while True:
    with open("/stamp/log", "a") as f:
        f.write("%.4f\\n" % time.time())
    time.sleep(0.01)
"""
BURST = 256 * 1024      # the most a paced link sends at once, however long it sat idle
CHUNK = 64 * 1024


# ---------------------------------------------------------------- the link


class TokenBucket:
    """Pacing to `rate` bytes/s: credit accrues with time, capped at `burst` bytes, so an idle
    link never earns more than one burst (pacing the average since the start would let it
    send everything it "saved" while idle at full speed)."""

    def __init__(self, rate: float, burst: int = BURST) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self.stamp = time.monotonic()        # the host's clock: this process is in no time namespace

    def take(self, n: int) -> None:
        """Wait until n bytes (at most one burst) may go, and spend their credit."""
        while True:
            now = time.monotonic()
            self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= n:
                self.tokens -= n
                return
            time.sleep((n - self.tokens) / self.rate)


def _pump(src: socket.socket, dst: socket.socket, rate: float) -> None:
    """Copy until EOF, paced by a token bucket at `rate` bytes/s (0: as fast as it goes); then half-close dst."""
    bucket = TokenBucket(rate) if rate else None
    try:
        while True:
            data = src.recv(CHUNK)
            if not data:
                break
            if bucket is not None:
                bucket.take(len(data))
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            try:
                s.shutdown(how)
            except OSError:
                pass


def over_link(send: list[str], recv: list[str], send_env: dict, recv_env: dict, rate: float,
              send_stdin: int | None = None, recv_stdout: int | None = None) -> tuple[int, int, str]:
    """Run send and recv with a paced TCP link between send's stdout and recv's stdin (and back)."""
    with socket.create_server(("127.0.0.1", 0)) as srv:
        a_end = socket.create_connection(srv.getsockname())
        a_relay, _ = srv.accept()
        b_end = socket.create_connection(srv.getsockname())
        b_relay, _ = srv.accept()
    fwd = threading.Thread(target=_pump, args=(a_relay, b_relay, rate), daemon=True)
    back = threading.Thread(target=_pump, args=(b_relay, a_relay, 0), daemon=True)
    fwd.start()
    back.start()
    ps = subprocess.Popen(send, stdin=a_end.fileno() if send_stdin is None else send_stdin,
                          stdout=a_end.fileno(), stderr=subprocess.PIPE, env=send_env)
    pr = subprocess.Popen(recv, stdin=b_end.fileno(), stdout=b_end.fileno() if recv_stdout is None else recv_stdout,
                          stderr=subprocess.PIPE, env=recv_env)
    a_end.close()
    b_end.close()
    _, rerr = pr.communicate()
    _, serr = ps.communicate()
    fwd.join(5)
    back.join(5)
    for s in (a_relay, b_relay):
        s.close()
    return ps.returncode, pr.returncode, (serr + rerr).decode(errors="replace")


# ---------------------------------------------------------------- hosts


class Host:
    def __init__(self, work: Path, name: str, lower: Path, stamp: Path, runc_ckpt: str) -> None:
        self.name = name
        self.base = work / f"host-{name}"
        self.runc = Runc(self.base / "runc-root")
        self.root = self.runc.root
        self.state = self.base / "state"
        self.bundle = self.base / "bundle"
        for d in (self.state, self.bundle):
            d.mkdir(parents=True, exist_ok=True)
        self.env = runc_ckpt_config(self.base / "runc-ckpt.yaml", self.state)
        self.runc_ckpt = runc_ckpt
        self.lower = lower
        self.stamp = stamp
        self.rootfs = self.bundle / "rootfs"
        self.upper = self.bundle / "upper"

    def fresh(self, mem_mib: int) -> None:
        """An empty overlay over the image and the workload's config.json."""
        self.runc.remove(CID)
        umount_under(self.rootfs)
        for d in ("upper", "work", "rootfs"):
            shutil.rmtree(self.bundle / d, ignore_errors=True)
            (self.bundle / d).mkdir()
        shutil.rmtree(self.state, ignore_errors=True)
        self.state.mkdir()
        mount_overlay(self.lower, self.upper, self.bundle / "work", self.rootfs)
        spec = make_spec(["/usr/bin/python3", "-c", WORKLOAD.format(mem=mem_mib)])
        spec["process"]["rlimits"] = []
        spec["linux"]["resources"] = {}
        for src, dst in HOST_MOUNTS:
            spec["mounts"].append({"destination": dst, "type": "bind", "source": src, "options": ["rbind", "ro"]})
        spec["mounts"].append({"destination": "/stamp", "type": "bind", "source": str(self.stamp),
                               "options": ["rbind", "rw"]})
        (self.bundle / "config.json").write_text(json.dumps(spec))

    def ckpt(self, *args: str) -> list[str]:
        return [self.runc_ckpt, "--root", str(self.root), *args]


def fill_diff(upper: Path, diff_mib: int, files: int) -> None:
    """The rootfs diff, written straight into the overlay upper dir (as the container's own writes)."""
    if diff_mib:
        write_half_random(str(upper / "bigdata"), diff_mib)
    for i in range(files):
        d = upper / "small" / f"d{i // 1000:03d}"
        if i % 1000 == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}").write_bytes(os.urandom(512) + bytes(512))


def start_workload(host: Host, mem_mib: int) -> None:
    host.runc.run_detached(host.bundle, CID)
    wait_memory(host.stamp, mem_mib)


def wait_memory(stamp: Path, mem_mib: int) -> None:
    """The workload writes stamps only once its memory is filled: wait for a few."""
    log = stamp / "log"
    deadline = time.monotonic() + 120 + mem_mib / 50
    while time.monotonic() < deadline:
        if log.exists() and len(log.read_text().split()) > 20:
            return
        time.sleep(0.05)
    raise BenchError("the workload did not start writing stamps")


def downtime(stamp: Path, wait: float) -> float:
    """Largest gap between two wall-clock stamps, once the target has written for `wait` seconds or so."""
    log = stamp / "log"
    n = len(log.read_text().split())
    deadline = time.monotonic() + 60
    while len(log.read_text().split()) < n + int(wait / 0.01 / 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    stamps = [float(x) for x in log.read_text().split()]
    return max(b - a for a, b in itertools.pairwise(stamps))


def reset_stamp(stamp: Path) -> None:
    shutil.rmtree(stamp, ignore_errors=True)
    stamp.mkdir()


# ---------------------------------------------------------------- methods


def prepare(a: Host, b: Host, args: argparse.Namespace) -> None:
    b.fresh(args.mem_mib)
    a.fresh(args.mem_mib)
    reset_stamp(a.stamp)         # after the last run's containers are gone
    fill_diff(a.upper, args.diff_mib, args.files)
    os.sync()
    start_workload(a, args.mem_mib)


def check(ok: bool, what: str, out: str) -> None:
    if not ok:
        raise BenchError(f"{what} failed:\n{out}")


def run_three_step(a: Host, b: Host, args: argparse.Namespace, rate: float) -> float:
    prepare(a, b, args)
    archive_a, archive_b = a.base / "web.tar.zst", b.base / "web.tar.zst"
    out = subprocess.run(a.ckpt("checkpoint", "--export", str(archive_a), CID), capture_output=True, text=True,
                         env=a.env, stdin=subprocess.DEVNULL, check=False)
    check(out.returncode == 0, "checkpoint --export", out.stderr)
    with open(archive_b, "wb") as f:
        rs, rr, err = over_link(["cat", str(archive_a)], ["cat"], a.env, b.env, rate, recv_stdout=f.fileno())
    check(rs == 0 and rr == 0, "copy", err)
    out = subprocess.run(b.ckpt("restore", "--import", str(archive_b), "--bundle", str(b.bundle), "-d", CID),
                         capture_output=True, text=True, env=b.env, stdin=subprocess.DEVNULL, check=False)
    check(out.returncode == 0, "restore --import", out.stderr)
    return downtime(a.stamp, args.wait)


def run_stream(a: Host, b: Host, args: argparse.Namespace, rate: float, two_phase: bool) -> float:
    prepare(a, b, args)
    extra = ["--pre-copy", "--handshake"] if two_phase else []
    rs, rr, err = over_link(a.ckpt("checkpoint", "--export", "-", "--compress", args.compress, *extra, CID),
                            b.ckpt("restore", "--import", "-", *extra[1:], "--bundle", str(b.bundle), "-d", CID),
                            a.env, b.env, rate, send_stdin=None if two_phase else subprocess.DEVNULL)
    check(rs == 0 and rr == 0, "stream", err)
    return downtime(a.stamp, args.wait)


def run_limit(a: Host, b: Host, args: argparse.Namespace) -> float:
    """CRIU dump + restore of the same memory on local disk: no rootfs, no archive, no transfer."""
    prepare(a, b, args)
    images = a.base / "limit-images"
    shutil.rmtree(images, ignore_errors=True)
    out = a.runc("checkpoint", "--image-path", str(images), CID)
    check(out.returncode == 0, "runc checkpoint", out.stderr)
    out = a.runc("restore", "-d", "--image-path", str(images), "--bundle", str(a.bundle), CID)
    check(out.returncode == 0, "runc restore", out.stderr)
    d = downtime(a.stamp, args.wait)
    shutil.rmtree(images, ignore_errors=True)
    return d


def run_podman(work: Path, image_tar: Path, hosts: list[Host], args: argparse.Namespace, rate: float) -> float:
    stamp = hosts[0].stamp
    # The last method's workload (restored on host b) still writes to the same stamp dir:
    # it goes first, or its stamps would mix with podman's (and race the dir's reset).
    for h in hosts:
        h.runc.remove(CID)
    # Not under work: podman refuses a runroot path longer than 50 characters.
    pm = PodmanEnv(Path(tempfile.mkdtemp(prefix="rcmb-", dir="/tmp")), real_runc())
    try:
        pm.import_image(image_tar)
        reset_stamp(stamp)
        mounts = [f"-v={s}:{d}:ro" for s, d in HOST_MOUNTS] + [f"-v={stamp}:/stamp"]
        pm("create", "--name", "web", *mounts, pm.image, "/usr/bin/python3", "-c",
           WORKLOAD.format(mem=args.mem_mib))
        merged = Path(pm("mount", "web"))
        fill_diff(merged, args.diff_mib, args.files)
        pm("unmount", "web")
        os.sync()
        pm("start", "web")
        wait_memory(stamp, args.mem_mib)
        archive_a, archive_b = work / "podman-a.tar.zst", work / "podman-b.tar.zst"
        pm("container", "checkpoint", "-e", str(archive_a), "web")
        with open(archive_b, "wb") as f:
            rs, rr, err = over_link(["cat", str(archive_a)], ["cat"], pm.env, pm.env, rate, recv_stdout=f.fileno())
        check(rs == 0 and rr == 0, "copy", err)
        pm("container", "restore", "--import", str(archive_b), "--name", "web2")
        d = downtime(stamp, args.wait)
        for p in (archive_a, archive_b):
            p.unlink()
        return d
    finally:
        pm.teardown()


# ---------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mem-mib", type=int, default=None, help="the workload's memory (default 64, x --scale)")
    ap.add_argument("--diff-mib", type=int, default=None, help="rootfs diff in 16 MiB files (default 64, x --scale)")
    ap.add_argument("--files", type=int, default=None, help="small files in the rootfs diff (default 0)")
    ap.add_argument("--rate-mbit", type=float, default=1000)
    ap.add_argument("--compress", default="zstd", choices=("zstd", "gzip", "none"),
                    help="the streams' compression (a fast link may not need any)")
    ap.add_argument("--only", default="", help="comma-separated methods to run (default: all; limit always)")
    ap.add_argument("--podman", action=argparse.BooleanOptionalAction, default=True,
                    help="run podman's three steps too (default: yes)")
    ap.add_argument("--dir", default=None)
    add_common_args(ap)
    args = ap.parse_args()
    runc_ckpt = check_runc_ckpt(args.runc_ckpt)
    require("runc", "criu", "busybox", "python3", *(("podman", "conmon") if args.podman else ()))
    args.mem_mib = args.mem_mib or (8 if args.smoke else scaled(64, args.scale))
    args.diff_mib = args.diff_mib if args.diff_mib is not None else (4 if args.smoke else round(64 * args.scale))
    args.files = args.files if args.files is not None else (200 if args.smoke else 0)
    args.wait = 0.5 if args.smoke else 3.0       # seconds of stamps the target writes before the gap is read
    goals = Goals(smoke=args.smoke)
    rate = args.rate_mbit * 1e6 / 8
    work = Path(tempfile.mkdtemp(prefix="migrate-bench-", dir=args.dir))
    stamp = work / "stamp"
    hosts: list[Host] = []
    results: dict[str, float] = {}
    try:
        image_tar = busybox_tar(work / "busybox.tar")
        lower = unpack(image_tar, work / "lower")
        stamp.mkdir()
        a, b = Host(work, "a", lower, stamp, runc_ckpt), Host(work, "b", lower, stamp, runc_ckpt)
        hosts = [a, b]
        print(f"case: {args.mem_mib} MiB memory, rootfs diff {args.diff_mib} MiB + {args.files} small files, "
              f"link {'unpaced' if not rate else f'{args.rate_mbit:g} Mbit/s (token bucket, burst {BURST >> 10} KiB)'}",
              flush=True)
        for name, fn in (("limit", lambda: run_limit(a, b, args)),
                         ("3-step", lambda: run_three_step(a, b, args, rate)),
                         ("stream", lambda: run_stream(a, b, args, rate, False)),
                         ("two-phase", lambda: run_stream(a, b, args, rate, True)),
                         *((("podman", lambda: run_podman(work, image_tar, hosts, args, rate)),)
                           if args.podman else ())):
            if args.only and name != "limit" and name not in args.only.split(","):
                continue
            results[name] = fn()
            print(f"downtime {name:10} {results[name]:7.2f} s", flush=True)
    finally:
        for h in hosts:
            h.runc.remove_all()
        umount_under(work)
        shutil.rmtree(work, ignore_errors=True)
    print("\nratios (downtime / downtime):")
    for x in (m for m in ("3-step", "stream", "two-phase") if m in results):
        print(f"  {x:10} / limit  {ratio(results[x], results['limit']):6.2f}")
        if "podman" in results:
            print(f"  {x:10} / podman {ratio(results[x], results['podman']):6.2f}")
    if "two-phase" in results:
        if "podman" in results:
            print(goals.check("two-phase / podman's three steps", ratio(results["two-phase"], results["podman"]),
                              0.25))
        print(goals.check("two-phase / the limit (big case)", ratio(results["two-phase"], results["limit"]),
                          1.5))
    return goals.exit_code()


if __name__ == "__main__":
    run_main(main)
