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

Transfers go over real TCP connections on 127.0.0.1 through a relay in this
process that paces the forward direction to --rate-mbit (default 1000, 0:
unpaced) and passes the back channel untouched. Methods:
  podman     podman checkpoint --export, copy over the link, podman restore --import
             (private podman as in tests/podman_env.py, with --podman)
  3-step     runc-ckpt checkpoint --export FILE, copy over the link, restore --import FILE
  stream     checkpoint --export - | link | restore --import -
  two-phase  the stream with --pre-copy --handshake (rootfs and volumes sent before the freeze)
  limit      runc checkpoint + runc restore of the same container on local disk, no rootfs
Goals: two-phase <= 0.25x podman's three steps, and <= 1.5x the limit on the big case.

Usage: bench/migrate_bench.py [--mem-mib N] [--diff-mib N] [--files N] [--podman] [--rate-mbit R]
                              [--compress zstd|gzip|none] [--only 3-step,stream,two-phase,podman]
The issue's cases: --mem-mib 1024 --diff-mib 1024 --podman, and --mem-mib 64 --files 50000 --podman.
Defaults are small (64 MiB memory, 64 MiB diff) so that a run takes a minute.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.restore_bench import _write_data
from tests.integration.conftest import make_spec, mount_overlay
from tests.podman_env import PodmanEnv, build_busybox_tar

RUNC_CKPT = os.path.join(os.path.dirname(sys.executable), "runc-ckpt")
CID = "mig"
HOST_MOUNTS = [("/usr", "/usr"), ("/usr/lib", "/lib"), ("/usr/lib64", "/lib64")]
WORKLOAD = """
import os, time
n = {mem} << 19
mem = bytearray(os.urandom(n)) + bytearray(b"\\x01") * n
while True:
    with open("/stamp/log", "a") as f:
        f.write("%.4f\\n" % time.time())
    time.sleep(0.01)
"""


# ---------------------------------------------------------------- the link


def _pump(src: socket.socket, dst: socket.socket, rate: float) -> None:
    """Copy until EOF, paced to `rate` bytes/s (0: as fast as it goes); then half-close dst."""
    start, sent = time.monotonic(), 0
    try:
        while True:
            data = src.recv(1 << 20)
            if not data:
                break
            dst.sendall(data)
            sent += len(data)
            if rate:
                ahead = sent / rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
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
    def __init__(self, work: Path, name: str, lower: Path, stamp: Path) -> None:
        self.name = name
        self.base = work / f"host-{name}"
        self.root = self.base / "runc-root"
        self.state = self.base / "state"
        self.bundle = self.base / "bundle"
        for d in (self.root, self.state, self.bundle):
            d.mkdir(parents=True, exist_ok=True)
        self.cfg = self.base / "runc-ckpt.yaml"
        self.cfg.write_text(f"state_dir: {self.state}\nvolume_roots: []\n")
        self.env = dict(os.environ, RUNC_CKPT_CONFIG=str(self.cfg))
        self.lower = lower
        self.stamp = stamp
        self.rootfs = self.bundle / "rootfs"
        self.upper = self.bundle / "upper"

    def fresh(self, mem_mib: int) -> None:
        """An empty overlay over the image and the workload's config.json."""
        self.runc("delete", "--force", CID)
        subprocess.run(["umount", "-l", str(self.rootfs)], capture_output=True, check=False)
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

    def runc(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["runc", "--root", str(self.root), *args], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, check=False)

    def ckpt(self, *args: str) -> list[str]:
        return [RUNC_CKPT, "--root", str(self.root), *args]


def fill_diff(upper: Path, diff_mib: int, files: int) -> None:
    """The rootfs diff, written straight into the overlay upper dir (as the container's own writes)."""
    if diff_mib:
        _write_data(str(upper / "bigdata"), diff_mib)
    for i in range(files):
        d = upper / "small" / f"d{i // 1000:03d}"
        if i % 1000 == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}").write_bytes(os.urandom(512) + bytes(512))


def start_workload(host: Host, mem_mib: int) -> None:
    # The container's stdio is /dev/null: CRIU cannot dump a host file or a pipe nobody reads.
    log = host.base / "run.log"
    out = subprocess.run(["runc", "--root", str(host.root), "--log", str(log), "run", "-d", "--bundle",
                          str(host.bundle), CID], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, check=False)
    if out.returncode != 0:
        raise SystemExit(f"runc run failed: {log.read_text() if log.exists() else ''}")
    wait_memory(host.stamp, mem_mib)


def wait_memory(stamp: Path, mem_mib: int) -> None:
    """The workload writes stamps only once its memory is filled: wait for a few."""
    log = stamp / "log"
    deadline = time.monotonic() + 120 + mem_mib / 50
    while time.monotonic() < deadline:
        if log.exists() and len(log.read_text().split()) > 20:
            return
        time.sleep(0.1)
    raise SystemExit("the workload did not start writing stamps")


def downtime(stamp: Path, wait: float = 3.0) -> float:
    """Largest gap between stamps, once the target has written for a while."""
    log = stamp / "log"
    n = len(log.read_text().split())
    deadline = time.monotonic() + 60
    while len(log.read_text().split()) < n + int(wait / 0.01 / 2) and time.monotonic() < deadline:
        time.sleep(0.1)
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
    subprocess.run(["sync"], check=False)
    start_workload(a, args.mem_mib)


def check(ok: bool, what: str, out: str) -> None:
    if not ok:
        raise SystemExit(f"{what} failed:\n{out}")


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
    return downtime(a.stamp)


def run_stream(a: Host, b: Host, args: argparse.Namespace, rate: float, two_phase: bool) -> float:
    prepare(a, b, args)
    extra = ["--pre-copy", "--handshake"] if two_phase else []
    rs, rr, err = over_link(a.ckpt("checkpoint", "--export", "-", "--compress", args.compress, *extra, CID),
                            b.ckpt("restore", "--import", "-", *extra[1:], "--bundle", str(b.bundle), "-d", CID),
                            a.env, b.env, rate, send_stdin=None if two_phase else subprocess.DEVNULL)
    check(rs == 0 and rr == 0, "stream", err)
    return downtime(a.stamp)


def run_limit(a: Host, b: Host, args: argparse.Namespace) -> float:
    """CRIU dump + restore of the same memory on local disk: no rootfs, no archive, no transfer."""
    prepare(a, b, args)
    images = a.base / "limit-images"
    shutil.rmtree(images, ignore_errors=True)
    out = a.runc("checkpoint", "--image-path", str(images), CID)
    check(out.returncode == 0, "runc checkpoint", out.stderr)
    out = subprocess.run(["runc", "--root", str(a.root), "restore", "-d", "--image-path", str(images),
                          "--bundle", str(a.bundle), CID], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, check=False)
    check(out.returncode == 0, "runc restore", out.stderr)
    d = downtime(a.stamp)
    shutil.rmtree(images, ignore_errors=True)
    return d


def run_podman(work: Path, image_tar: Path, stamp: Path, args: argparse.Namespace, rate: float) -> float:
    env = PodmanEnv(Path(tempfile.mkdtemp(prefix="rmb-", dir="/tmp")), shutil.which("runc") or "runc")

    def pm(*a: str) -> str:
        return env.podman(*a, timeout=3600).stdout.strip()

    try:
        env.import_image(image_tar)
        reset_stamp(stamp)
        mounts = [f"-v={s}:{d}:ro" for s, d in HOST_MOUNTS] + [f"-v={stamp}:/stamp"]
        pm("create", "--name", "web", *mounts, env.image, "/usr/bin/python3", "-c",
           WORKLOAD.format(mem=args.mem_mib))
        merged = Path(pm("mount", "web"))
        fill_diff(merged, args.diff_mib, args.files)
        pm("unmount", "web")
        subprocess.run(["sync"], check=False)
        pm("start", "web")
        wait_memory(stamp, args.mem_mib)
        archive_a, archive_b = work / "podman-a.tar.zst", work / "podman-b.tar.zst"
        pm("container", "checkpoint", "-e", str(archive_a), "web")
        with open(archive_b, "wb") as f:
            rs, rr, err = over_link(["cat", str(archive_a)], ["cat"], env.env, env.env, rate, recv_stdout=f.fileno())
        check(rs == 0 and rr == 0, "copy", err)
        pm("container", "restore", "--import", str(archive_b), "--name", "web2")
        d = downtime(stamp)
        for p in (archive_a, archive_b):
            p.unlink()
        return d
    finally:
        env.teardown()


# ---------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mem-mib", type=int, default=64)
    ap.add_argument("--diff-mib", type=int, default=64)
    ap.add_argument("--files", type=int, default=0)
    ap.add_argument("--rate-mbit", type=float, default=1000)
    ap.add_argument("--compress", default="zstd", choices=("zstd", "gzip", "none"),
                    help="the streams' compression (a fast link may not need any)")
    ap.add_argument("--only", default="", help="comma-separated methods to run (default: all; limit always)")
    ap.add_argument("--podman", action="store_true", help="also run podman's three steps (slow)")
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    rate = args.rate_mbit * 1e6 / 8
    work = Path(tempfile.mkdtemp(prefix="migrate-bench-", dir=args.dir))
    image_tar = build_busybox_tar(work / "busybox.tar")
    lower = work / "lower"
    lower.mkdir()
    subprocess.run(["tar", "-C", str(lower), "-xf", str(image_tar)], check=True)
    stamp = work / "stamp"
    stamp.mkdir()
    a, b = Host(work, "a", lower, stamp), Host(work, "b", lower, stamp)
    print(f"case: {args.mem_mib} MiB memory, rootfs diff {args.diff_mib} MiB + {args.files} small files, "
          f"link {'unpaced' if not rate else f'{args.rate_mbit:g} Mbit/s'}", flush=True)
    results: dict[str, float] = {}
    try:
        for name, fn in (("limit", lambda: run_limit(a, b, args)),
                         ("3-step", lambda: run_three_step(a, b, args, rate)),
                         ("stream", lambda: run_stream(a, b, args, rate, False)),
                         ("two-phase", lambda: run_stream(a, b, args, rate, True)),
                         *((("podman", lambda: run_podman(work, image_tar, stamp, args, rate)),)
                           if args.podman else ())):
            if args.only and name != "limit" and name not in args.only.split(","):
                continue
            results[name] = fn()
            print(f"downtime {name:10} {results[name]:7.2f} s", flush=True)
    finally:
        for h in (a, b):
            h.runc("delete", "--force", CID)
            subprocess.run(["umount", "-l", str(h.rootfs)], capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)
    print("\nratios (downtime / downtime):")
    for x in (m for m in ("3-step", "stream", "two-phase") if m in results):
        print(f"  {x:10} / limit  {results[x] / results['limit']:6.2f}")
        if "podman" in results:
            print(f"  {x:10} / podman {results[x] / results['podman']:6.2f}")
    missed: list[str] = []
    if "two-phase" not in results:
        return 0
    if "podman" in results:
        r = results["two-phase"] / results["podman"]
        print(f"goal: two-phase <= 0.25x podman's three steps: {r:.2f} {'met' if r <= 0.25 else 'MISSED'}")
        missed += [] if r <= 0.25 else ["podman"]
    r = results["two-phase"] / results["limit"]
    print(f"goal: two-phase <= 1.5x the limit (big case): {r:.2f} {'met' if r <= 1.5 else 'MISSED'}")
    missed += [] if r <= 1.5 else ["limit"]
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
