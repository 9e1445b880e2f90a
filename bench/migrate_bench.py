#!/usr/bin/env python3
"""Live migration downtime between two simulated hosts against CRIU's local limit: issue 23's table, in one run.

Host A and host B each have their own runc --root, runc-ckpt state dir and
config, bundle and overlay rootfs (over the same busybox image), and their
own read-only /host directory whose `name` file says which host it is. The
container is a Python process (the host's /usr bind-mounted read-only)
holding some memory (half random, half a repeated byte) and a rootfs diff;
every 5 ms it appends a stamp to a log on a shared host directory: the
name of the host it runs on (read from /host/name each time, so a restored
process says "b"), the wall-clock time and how many pages it has dirtied.

The stamps are wall-clock time (time.time(), CLOCK_REALTIME), never
CLOCK_MONOTONIC or /proc/uptime: CRIU restores the process into a time
namespace whose monotonic clock is offset, and the two sides must share one
clock. From the stamps, for a migration started at t0:
  downtime        the last stamp on the source -> the first on the target (the freeze until it runs again)
  phase-0 pause   the largest gap between the source's stamps from t0 to the freeze (a --leave-running
                  memory dump before the freeze stops the container for that long)
  pages changed   pages the workload dirtied from t0 to the freeze (at most all of them)
On one host (the limit, podman) the downtime is the largest gap from t0.

Transfers go over real TCP connections on 127.0.0.1 through a relay in this
process that paces the forward direction to --rate-mbit (default 1000, 0:
unpaced) with a token bucket: credit accrues at the rate, capped at one burst
(256 KiB), so a link that sat idle (phase 1 done, CRIU dumping) earns no
credit beyond that burst and cannot then send faster than the rate. The back
channel passes untouched. The relay stamps every chunk it forwards with the
wall clock, so the bytes split at the freeze (the source's last stamp) into
phase 0's bytes and the bytes sent after the freeze. runc-ckpt is driven
through its command line only (the venv's `runc-ckpt`, or --runc-ckpt).

Methods, in every case:
  limit      runc checkpoint + runc restore of the same container on local disk, no rootfs (its dump
             time, the wall time of `runc checkpoint`, bounds the phase-0 pause)
  two-phase  checkpoint --export - --pre-copy --handshake | link | restore --import - --handshake
Only in the first case (--compare; each also proves its code path in --smoke):
  3-step     runc-ckpt checkpoint --export FILE, copy over the link, restore --import FILE
  stream     checkpoint --export - | link | restore --import -
  podman     podman checkpoint --export, copy over the link, podman restore --import
             (a private podman, bench/_common.PodmanEnv, runtime the real runc)
Cases (--cases; sizes x --scale, tiny in --smoke):
  idle       512 MiB memory, idle after writing, 16 MiB rootfs diff
  big        1 GiB memory, idle after writing, 1 GiB rootfs diff
  dirty      1 GiB memory that the workload keeps dirtying at 64 MiB/s (1/16 of it per second), 16 MiB diff
  files      64 MiB memory + 50k small files (not in the default --cases: rootfs, not memory)
  periodic   1 GiB memory: checkpoint --export FILE --leave-running, the workload changes 5 % of its pages,
             then an incremental child archive against the first (PARENT_FLAG; "not available" when the
             installed runc-ckpt's `checkpoint --help` lacks it)
Goals (issue 23): downtime <= 1.5x the limit (dirty: 2.5x); bytes after the freeze <= 5 % of phase 0's
(idle and big); phase-0 pause <= 1.2x the limit's dump time; child / full archive <= 0.1; two-phase <= 0.25x
podman's three steps. Exit 3 if a goal is missed (never in --smoke).

Usage: bench/migrate_bench.py [--cases idle,big,dirty,periodic] [--compare 3-step,stream,podman] [--repeat N]
                              [--rate-mbit R] [--compress zstd|gzip|none] [--smoke] [--scale F] [--runc-ckpt PATH]
A full run takes a few minutes (about 2.5 on two busy cores); --scale 0.25 for a quick look, --repeat 3
for the best of three (the issue's figures), --smoke (in `make test`): tiny sizes, about 20 s.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pycriu.images
from _common import (
    MIB,
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
# The incremental archive's flag (`checkpoint --export FILE <PARENT_FLAG> PARENT_ARCHIVE`): issue 23
# named it --incremental-from; the periodic row says "not available" where `checkpoint --help` lacks it.
PARENT_FLAG = "--incremental-from"
PAGE = 4096
TICK = 0.005            # seconds between the workload's stamps
TOUCH_EVERY = 20        # the periodic case's change: every 20th page, 5 % of the memory
# Stamps "HOST WALLCLOCK PAGES_DIRTIED" every TICK; dirties `dirty` MiB/s as a ring over the whole
# buffer (one byte per page, a new value each lap: content a page hash sees change), never catching
# up time it spent frozen; dirties every TOUCH_EVERY-th page once for each /host/touch-N that appears.
WORKLOAD = """
import os, time
half, chunk = {mem} << 19, 1 << 19
mem = bytearray(2 * half)
for i in range(0, half, chunk):
    mem[i:i + chunk] = os.urandom(chunk)
one = b"\\x01" * chunk
for i in range(half, 2 * half, chunk):
    mem[i:i + chunk] = one
P = {page}
pages = len(mem) // P
rate = {dirty} * (1 << 20) / P
burst = max(1, int(rate * 0.05))
dirtied = pos = touches = 0
lap = 2
start = time.time()
while True:
    now = time.time()
    with open("/host/name") as f:
        host = f.read().strip()
    with open("/stamp/log", "a") as f:
        f.write("%s %.4f %d\\n" % (host, now, dirtied))
    if rate:
        due = int((now - start) * rate) - dirtied
        if due > burst:
            start += (due - burst) / rate
            due = burst
        dirtied += max(due, 0)
        while due > 0:
            n = min(due, pages - pos)
            mem[pos * P:(pos + n) * P:P] = bytes([lap]) * n
            pos, due = pos + n, due - n
            if pos == pages:
                pos, lap = 0, lap % 250 + 2
    if os.path.exists("/host/touch-%d" % touches):
        n = len(range(1, len(mem), {every} * P))
        mem[1::{every} * P] = bytes([touches % 250 + 2]) * n
        touches, dirtied = touches + 1, dirtied + n
    time.sleep({tick})
"""
COMPARED = ("3-step", "stream", "podman")
BURST = 256 * 1024      # the most a paced link sends at once, however long it sat idle
CHUNK = 64 * 1024


@dataclass(frozen=True)
class Case:
    """One row of the table: a workload, its rootfs diff, and the goals it is held to."""

    name: str
    title: str
    mem_mib: int
    diff_mib: int
    dirty_mib_s: float = 0.0
    files: int = 0                      # small files (1 KiB) in the rootfs diff
    downtime_goal: float = 1.5
    after_goal: float | None = 5.0      # bytes after the freeze, % of phase 0's (None: printed only)

    def workload(self) -> str:
        return WORKLOAD.format(mem=self.mem_mib, dirty=self.dirty_mib_s, page=PAGE, every=TOUCH_EVERY, tick=TICK)


def cases(smoke: bool, scale: float) -> dict[str, Case]:
    """The issue's cases (and `files`, run only when asked for), x scale; tiny in smoke mode.
    The dirty rate is 1/16 of the memory per second."""
    def mib(full: int, tiny: int) -> int:
        return tiny if smoke else scaled(full, scale)
    mem, big = mib(512, 8), mib(1024, 16)
    return {c.name: c for c in (
        Case("idle", f"{mem} MiB memory (half random, idle), {mib(16, 2)} MiB diff", mem, mib(16, 2)),
        Case("big", f"{big} MiB memory (half random, idle) + {mib(1024, 8)} MiB diff", big, mib(1024, 8)),
        Case("dirty", f"{big} MiB memory dirtied at {big / 16:g} MiB/s, {mib(16, 2)} MiB diff", big, mib(16, 2),
             dirty_mib_s=big / 16, downtime_goal=2.5, after_goal=None),
        Case("periodic", f"{big} MiB memory, {100 // TOUCH_EVERY} % of its pages changed", big, mib(16, 2)),
        Case("files", f"{mib(64, 8)} MiB memory (half random, idle) + {mib(50000, 200)} small files",
             mib(64, 8), 0, files=mib(50000, 200), after_goal=None),
    )}


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


@dataclass
class Traffic:
    """What crossed the link forward: (wall-clock time, bytes so far) after every chunk, to split at the freeze."""

    times: list[float] = field(default_factory=list)
    totals: list[int] = field(default_factory=list)

    def add(self, n: int) -> None:
        self.times.append(time.time())       # the stamps' clock
        self.totals.append((self.totals[-1] if self.totals else 0) + n)

    def until(self, t: float) -> int:
        """Bytes forwarded at or before wall-clock time t."""
        i = bisect.bisect_right(self.times, t)
        return self.totals[i - 1] if i else 0

    @property
    def total(self) -> int:
        return self.totals[-1] if self.totals else 0


def _pump(src: socket.socket, dst: socket.socket, rate: float, traffic: Traffic | None = None) -> None:
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
            if traffic is not None:
                traffic.add(len(data))
    except OSError:
        pass
    finally:
        for s, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            try:
                s.shutdown(how)
            except OSError:
                pass


def over_link(send: list[str], recv: list[str], send_env: dict, recv_env: dict, rate: float,
              send_stdin: int | None = None, recv_stdout: int | None = None) -> tuple[int, int, str, Traffic]:
    """Run send and recv with a paced TCP link between send's stdout and recv's stdin (and back):
    their exit codes, their stderr and the forward traffic."""
    traffic = Traffic()
    with socket.create_server(("127.0.0.1", 0)) as srv:
        a_end = socket.create_connection(srv.getsockname())
        a_relay, _ = srv.accept()
        b_end = socket.create_connection(srv.getsockname())
        b_relay, _ = srv.accept()
    fwd = threading.Thread(target=_pump, args=(a_relay, b_relay, rate, traffic), daemon=True)
    back = threading.Thread(target=_pump, args=(b_relay, a_relay, 0), daemon=True)
    fwd.start()
    back.start()
    # stderr to files, not pipes: a pipe read only at the end fills up (the sender's --debug lines, runc's
    # among them), and a writer blocked on it stalls the migration (runc and CRIU with the container frozen).
    with tempfile.TemporaryFile() as serr, tempfile.TemporaryFile() as rerr:
        ps = subprocess.Popen(send, stdin=a_end.fileno() if send_stdin is None else send_stdin,
                              stdout=a_end.fileno(), stderr=serr, env=send_env)
        pr = subprocess.Popen(recv, stdin=b_end.fileno(),
                              stdout=b_end.fileno() if recv_stdout is None else recv_stdout, stderr=rerr, env=recv_env)
        a_end.close()
        b_end.close()
        pr.wait()
        ps.wait()
        fwd.join(5)
        back.join(5)
        for s in (a_relay, b_relay):
            s.close()
        serr.seek(0)
        rerr.seek(0)
        err = (serr.read() + rerr.read()).decode(errors="replace")
    return ps.returncode, pr.returncode, err, traffic


# ---------------------------------------------------------------- hosts


def host_id_dir(path: Path, name: str) -> Path:
    """The directory a container sees as /host (read-only): its `name` file names the host."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "name").write_text(name + "\n")
    return path


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
        self.ident = host_id_dir(self.base / "id", name)
        self.rootfs = self.bundle / "rootfs"
        self.upper = self.bundle / "upper"

    def fresh(self, workload: str) -> None:
        """An empty overlay over the image, no touch requests, and config.json running workload."""
        self.runc.remove(CID)
        umount_under(self.rootfs)
        for d in ("upper", "work", "rootfs"):
            shutil.rmtree(self.bundle / d, ignore_errors=True)
            (self.bundle / d).mkdir()
        shutil.rmtree(self.state, ignore_errors=True)
        self.state.mkdir()
        for f in self.ident.glob("touch-*"):
            f.unlink()
        mount_overlay(self.lower, self.upper, self.bundle / "work", self.rootfs)
        spec = make_spec(["/usr/bin/python3", "-c", workload])
        spec["process"]["rlimits"] = []
        spec["linux"]["resources"] = {}
        for src, dst in HOST_MOUNTS:
            spec["mounts"].append({"destination": dst, "type": "bind", "source": src, "options": ["rbind", "ro"]})
        for src, dst, mode in ((self.ident, "/host", "ro"), (self.stamp, "/stamp", "rw")):
            spec["mounts"].append({"destination": dst, "type": "bind", "source": str(src),
                                   "options": ["rbind", mode]})
        (self.bundle / "config.json").write_text(json.dumps(spec))

    def ckpt(self, *args: str) -> list[str]:
        return [self.runc_ckpt, "--root", str(self.root), *args]


def fill_diff(upper: Path, diff_mib: int, files: int = 0) -> None:
    """The rootfs diff, written straight into the overlay upper dir (as the container's own writes)."""
    if diff_mib:
        write_half_random(str(upper / "bigdata"), diff_mib)
    for i in range(files):
        d = upper / "small" / f"d{i // 1000:03d}"
        if i % 1000 == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}").write_bytes(os.urandom(512) + bytes(512))


# ---------------------------------------------------------------- stamps


@dataclass(frozen=True)
class Stamp:
    host: str
    time: float
    dirtied: int


def read_stamps(stamp_dir: Path) -> list[Stamp]:
    """The workload's stamps so far (a line it is still writing is left out)."""
    log = stamp_dir / "log"
    out = []
    for line in log.read_text().splitlines() if log.exists() else ():
        parts = line.split()
        if len(parts) == 3:
            try:
                out.append(Stamp(parts[0], float(parts[1]), int(parts[2])))
            except ValueError:
                pass
    return out


def wait_stamps(stamp_dir: Path, count: int, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(read_stamps(stamp_dir)) < count:
        if time.monotonic() > deadline:
            raise BenchError(f"the workload did not stamp: {what}")
        time.sleep(0.05)


def wait_memory(stamp_dir: Path, mem_mib: int) -> None:
    """The workload stamps only once its memory is filled: wait for a few."""
    wait_stamps(stamp_dir, 20, "it never started", 120 + mem_mib / 50)


def wait_dirtied(stamp_dir: Path, pages: int) -> None:
    deadline = time.monotonic() + 60
    while not (s := read_stamps(stamp_dir)) or s[-1].dirtied < pages:
        if time.monotonic() > deadline:
            raise BenchError("the workload did not change its pages")
        time.sleep(0.05)


@dataclass(frozen=True)
class Moved:
    """What the stamps say about one migration (or local dump + restore) started at t0."""

    downtime: float         # seconds: the source's last stamp -> the target's first (one host: the largest gap)
    pause: float            # seconds: the largest gap in the source's stamps from t0 to the freeze
    freeze: float           # wall-clock time of the source's last stamp
    changed: int            # bytes of pages the workload dirtied from t0 to the freeze


def moved(stamp_dir: Path, t0: float, wait: float, mem_mib: int) -> Moved:
    """Once the target has stamped for about `wait` seconds, what the stamps from t0 on say."""
    wait_stamps(stamp_dir, len(read_stamps(stamp_dir)) + int(wait / TICK / 2), "it never ran again", 60)
    stamps = [s for s in read_stamps(stamp_dir) if s.time >= t0]
    if len(stamps) < 2:
        raise BenchError("no stamps around the freeze")
    source = stamps[0].host
    k = next((i for i, s in enumerate(stamps) if s.host != source), None)
    before = stamps if k is None else stamps[:k]
    gaps = [b.time - a.time for a, b in itertools.pairwise(before)]
    if k is None:           # one host: the freeze is the largest gap
        i = max(range(len(gaps)), key=gaps.__getitem__)
        freeze, down = stamps[i].time, gaps[i]
        pause = max(gaps[:i], default=0.0)
        last = stamps[i]
    else:
        last = stamps[k - 1]
        freeze, down = last.time, stamps[k].time - last.time
        pause = max(gaps, default=0.0)
    changed = min(last.dirtied - stamps[0].dirtied, (mem_mib * MIB) // PAGE) * PAGE
    return Moved(down, pause, freeze, changed)


def reset_stamp(stamp: Path) -> None:
    shutil.rmtree(stamp, ignore_errors=True)
    stamp.mkdir()


# ---------------------------------------------------------------- methods


@dataclass(frozen=True)
class Result:
    moved: Moved
    phase0: int = 0         # bytes over the link up to the freeze
    after: int = 0          # bytes over the link after it
    dump: float = 0.0       # the limit: seconds of `runc checkpoint`
    frozen: float | None = None  # CRIU's frozen_time (stats-dump): the limit's dump; two-phase: its longest
    rounds: str = ""        # two-phase: the memory rounds, as the sender's debug line says


# The sender's debug lines (migrate/memory.py) that the two-phase row reports.
ROUNDS_LINE = re.compile(r"(\d+) memory rounds after phase 0 \(bytes sent: ([0-9, ]+); pauses: ([0-9., ]+) s\); "
                         r"stopped: (.*?)\"?$", re.MULTILINE)
P0_PAUSE = re.compile(r"phase-0 pause ([0-9.]+) s \(the container frozen")
DUMP_INTO = re.compile(r"(?:phase-0 memory|memory round \d+) dump into (\S+): ")   # memory.dump_dir's choice


def criu_frozen(work: Path) -> float | None:
    """CRIU's frozen_time of the dump whose stats-dump is in work (pycriu, CRIU's own decoder), in seconds."""
    try:
        with open(work / "stats-dump", "rb") as f:
            return pycriu.images.load(f)["entries"][0]["dump"]["frozen_time"] / 1e6
    except (OSError, KeyError, IndexError):
        return None


def rounds_of(err: str) -> tuple[str, float | None]:
    """(what the rounds were, the longest CRIU frozen_time of phase 0's dumps) from the sender's stderr."""
    m = ROUNDS_LINE.search(err)
    into = ", ".join("private tmpfs" if d.startswith("/proc/") else "tmpfs" if d.startswith("/dev/shm/") else "disk"
                     for d in DUMP_INTO.findall(err))
    if m is None:
        p0 = P0_PAUSE.search(err)
        return f"none (one phase-0 dump, into {into})", float(p0.group(1)) if p0 else None
    sizes = [mib(int(x)) for x in m.group(2).split(", ")]
    pauses = [float(x) for x in m.group(3).split(", ")]
    what = (f"{m.group(1)} after phase 0 (pages sent: {', '.join(sizes)}; CRIU frozen "
            f"{', '.join(f'{x:.2f}' for x in pauses)} s; into {into}); stopped: {m.group(4)}")
    return what, max(pauses)


def prepare(a: Host, b: Host, case: Case) -> None:
    b.fresh(case.workload())
    a.fresh(case.workload())
    reset_stamp(a.stamp)         # after the last run's containers are gone
    fill_diff(a.upper, case.diff_mib, case.files)
    os.sync()
    a.runc.run_detached(a.bundle, CID)
    wait_memory(a.stamp, case.mem_mib)


def check(ok: bool, what: str, out: str) -> None:
    if not ok:
        raise BenchError(f"{what} failed:\n{out}")


def run_limit(a: Host, b: Host, case: Case, wait: float) -> Result:
    """CRIU dump + restore of the same memory on local disk: no rootfs, no archive, no transfer."""
    prepare(a, b, case)
    images = a.base / "limit-images"
    shutil.rmtree(images, ignore_errors=True)
    t0 = time.time()
    out = a.runc("checkpoint", "--image-path", str(images), CID)
    dump = time.time() - t0
    check(out.returncode == 0, "runc checkpoint", out.stderr)
    frozen = criu_frozen(images)
    out = a.runc("restore", "-d", "--image-path", str(images), "--bundle", str(a.bundle), CID)
    check(out.returncode == 0, "runc restore", out.stderr)
    m = moved(a.stamp, t0, wait, case.mem_mib)
    shutil.rmtree(images, ignore_errors=True)
    return Result(m, dump=dump, frozen=frozen)


def run_three_step(a: Host, b: Host, case: Case, wait: float, rate: float) -> Result:
    prepare(a, b, case)
    archive_a, archive_b = a.base / "web.tar.zst", b.base / "web.tar.zst"
    t0 = time.time()
    out = subprocess.run(a.ckpt("checkpoint", "--export", str(archive_a), CID), capture_output=True, text=True,
                         env=a.env, stdin=subprocess.DEVNULL, check=False)
    check(out.returncode == 0, "checkpoint --export", out.stderr)
    with open(archive_b, "wb") as f:
        rs, rr, err, _ = over_link(["cat", str(archive_a)], ["cat"], a.env, b.env, rate, recv_stdout=f.fileno())
    check(rs == 0 and rr == 0, "copy", err)
    out = subprocess.run(b.ckpt("restore", "--import", str(archive_b), "--bundle", str(b.bundle), "-d", CID),
                         capture_output=True, text=True, env=b.env, stdin=subprocess.DEVNULL, check=False)
    check(out.returncode == 0, "restore --import", out.stderr)
    return Result(moved(a.stamp, t0, wait, case.mem_mib))


def run_stream(a: Host, b: Host, case: Case, wait: float, rate: float, compress: str, two_phase: bool) -> Result:
    prepare(a, b, case)
    extra = ["--pre-copy", "--handshake"] if two_phase else []
    t0 = time.time()
    rs, rr, err, traffic = over_link(
        a.ckpt(*(["--debug"] if two_phase else []), "checkpoint", "--export", "-", "--compress", compress, *extra,
               CID),
        b.ckpt("restore", "--import", "-", *extra[1:], "--bundle", str(b.bundle), "-d", CID),
        a.env, b.env, rate, send_stdin=None if two_phase else subprocess.DEVNULL)
    check(rs == 0 and rr == 0, "stream", err)
    m = moved(a.stamp, t0, wait, case.mem_mib)
    if not any(s.host == b.name for s in read_stamps(a.stamp)):
        raise BenchError(f"the container never ran on host {b.name}: {err.strip()[-1500:]}")
    head = traffic.until(m.freeze)
    rounds, frozen = rounds_of(err) if two_phase else ("", None)
    return Result(m, phase0=head, after=traffic.total - head, frozen=frozen, rounds=rounds)


def run_podman(work: Path, image_tar: Path, hosts: list[Host], case: Case, wait: float, rate: float) -> Result:
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
        ident = host_id_dir(work / "podman-id", "podman")
        mounts = [f"-v={s}:{d}:ro" for s, d in HOST_MOUNTS] + [f"-v={ident}:/host:ro", f"-v={stamp}:/stamp"]
        pm("create", "--name", "web", *mounts, pm.image, "/usr/bin/python3", "-c", case.workload())
        merged = Path(pm("mount", "web"))
        fill_diff(merged, case.diff_mib, case.files)
        pm("unmount", "web")
        os.sync()
        pm("start", "web")
        wait_memory(stamp, case.mem_mib)
        archive_a, archive_b = work / "podman-a.tar.zst", work / "podman-b.tar.zst"
        t0 = time.time()
        pm("container", "checkpoint", "-e", str(archive_a), "web")
        with open(archive_b, "wb") as f:
            rs, rr, err, _ = over_link(["cat", str(archive_a)], ["cat"], pm.env, pm.env, rate,
                                       recv_stdout=f.fileno())
        check(rs == 0 and rr == 0, "copy", err)
        pm("container", "restore", "--import", str(archive_b), "--name", "web2")
        m = moved(stamp, t0, wait, case.mem_mib)
        for p in (archive_a, archive_b):
            p.unlink()
        return Result(m)
    finally:
        pm.teardown()


@dataclass(frozen=True)
class Periodic:
    full: int               # bytes of the full archive
    child: int              # bytes of the incremental child
    full_secs: float
    child_secs: float


def knows_flag(runc_ckpt: str, flag: str) -> bool:
    """Whether the installed runc-ckpt's `checkpoint --help` lists flag."""
    out = subprocess.run([runc_ckpt, "checkpoint", "--help"], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, check=False)
    return any(word.rstrip(",") == flag for word in out.stdout.split())


def run_periodic(a: Host, b: Host, case: Case) -> Periodic:
    """A full --leave-running archive, then TOUCH_EVERY's share of the pages changes, then a child archive."""
    prepare(a, b, case)
    full, child = a.base / "full.tar.zst", a.base / "child.tar.zst"

    def export(path: Path, *extra: str) -> float:
        t = time.perf_counter()
        out = subprocess.run(a.ckpt("checkpoint", "--export", str(path), "--leave-running", *extra, CID),
                             capture_output=True, text=True, env=a.env, stdin=subprocess.DEVNULL, check=False)
        check(out.returncode == 0, f"checkpoint --export {path.name}", out.stderr)
        return time.perf_counter() - t

    full_secs = export(full)
    (a.ident / "touch-0").touch()
    wait_dirtied(a.stamp, len(range(1, case.mem_mib * MIB, TOUCH_EVERY * PAGE)))
    child_secs = export(child, PARENT_FLAG, str(full))
    result = Periodic(full.stat().st_size, child.stat().st_size, full_secs, child_secs)
    for p in (full, child):
        p.unlink()
    return result


def best(runs: int, fn: Callable[[], Result]) -> Result:
    """The run with the least downtime of `runs`: the one least disturbed by other load (the issue's best of 3)."""
    return min((fn() for _ in range(runs)), key=lambda r: r.moved.downtime)


def run_case(case: Case, a: Host, b: Host, work: Path, image_tar: Path, args: argparse.Namespace,
             compare: list[str]) -> dict[str, Result]:
    """The limit, two-phase, and the methods in compare, one after another: each method's best Result."""
    n = args.repeat
    res = {"limit": best(n, lambda: run_limit(a, b, case, args.wait)),
           "two-phase": best(n, lambda: run_stream(a, b, case, args.wait, args.rate, args.compress, True))}
    if "3-step" in compare:
        res["3-step"] = best(n, lambda: run_three_step(a, b, case, args.wait, args.rate))
    if "stream" in compare:
        res["stream"] = best(n, lambda: run_stream(a, b, case, args.wait, args.rate, args.compress, False))
    if "podman" in compare:
        res["podman"] = best(n, lambda: run_podman(work, image_tar, [a, b], case, args.wait, args.rate))
    return res


# ---------------------------------------------------------------- report


def mib(n: float) -> str:
    return f"{n / MIB:.1f} MiB"


def report_case(case: Case, res: dict[str, Result], goals: Goals) -> list[str]:
    """Print the case's figures; return its rows of the table, each against its goal."""
    limit, tp = res["limit"], res["two-phase"]
    print(f"  limit:     dump {limit.dump:.2f} s, downtime {limit.moved.downtime:.2f} s (local dump + restore)")
    print(f"  two-phase: downtime {tp.moved.downtime:.2f} s, phase-0 pause {tp.moved.pause:.3f} s; over the link "
          f"{mib(tp.phase0)} before the freeze, {mib(tp.after)} after it; {mib(tp.moved.changed)} of pages "
          "changed from the start to the freeze", flush=True)
    print(f"  rounds:    {tp.rounds}", flush=True)
    frozen = (f"; CRIU frozen_time {tp.frozen:.3f} s vs the limit's {limit.frozen:.3f} s"
              if tp.frozen is not None and limit.frozen is not None else "")
    print(f"  pause:     the stamps' largest gap {tp.moved.pause:.3f} s vs the limit's `runc checkpoint` "
          f"{limit.dump:.3f} s{frozen}", flush=True)
    for name in COMPARED:
        if name in res:
            print(f"  {name + ':':10} downtime {res[name].moved.downtime:.2f} s "
                  f"({ratio(res[name].moved.downtime, limit.moved.downtime):.2f}x the limit)", flush=True)
    down = goals.check(f"{case.name}: downtime / the CRIU-local limit",
                       ratio(tp.moved.downtime, limit.moved.downtime), case.downtime_goal)
    rows = [down + (f", beside {mib(tp.moved.changed)} changed before the freeze" if case.dirty_mib_s else ""),
            goals.check(f"{case.name}: bytes after the freeze / phase 0's", 100 * ratio(tp.after, tp.phase0),
                        case.after_goal, "%"),
            goals.check(f"{case.name}: phase-0 pause / the limit's dump time", ratio(tp.moved.pause, limit.dump),
                        1.2)]
    if tp.frozen is not None and limit.frozen is not None:     # the same definition on both sides
        rows.append(goals.check(f"{case.name}: phase-0 pause / the limit's dump, both CRIU's frozen_time",
                                ratio(tp.frozen, limit.frozen), 1.2))
    if "podman" in res:
        rows.append(goals.check(f"{case.name}: downtime / podman's three steps",
                                ratio(tp.moved.downtime, res["podman"].moved.downtime), 0.25))
    return rows


def report_periodic(case: Case, p: Periodic | None, goals: Goals) -> list[str]:
    if p is None:
        print(f"  not available: `runc-ckpt checkpoint --help` has no {PARENT_FLAG}", flush=True)
        return [f"{case.name}: archive size child / full: not available (no {PARENT_FLAG})"]
    print(f"  full archive {mib(p.full)} in {p.full_secs:.2f} s, child {mib(p.child)} in {p.child_secs:.2f} s",
          flush=True)
    return [goals.check(f"{case.name}: archive size child / full", ratio(p.child, p.full), 0.1),
            goals.check(f"{case.name}: checkpoint time child / full", ratio(p.child_secs, p.full_secs), None)]


# ---------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default="idle,big,dirty,periodic", help="comma-separated cases to run (default: all)")
    ap.add_argument("--compare", default="3-step,stream,podman",
                    help="methods beside two-phase in the first case (default: all three; '' for none)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each method, the least downtime kept (default 1)")
    ap.add_argument("--rate-mbit", type=float, default=1000)
    ap.add_argument("--compress", default="zstd", choices=("zstd", "gzip", "none"),
                    help="the streams' compression (a fast link may not need any)")
    ap.add_argument("--dir", default=None)
    add_common_args(ap)
    args = ap.parse_args()
    runc_ckpt = check_runc_ckpt(args.runc_ckpt)
    known = cases(args.smoke, args.scale)
    wanted = [c for c in args.cases.split(",") if c]
    compare = [m for m in args.compare.split(",") if m]
    if unknown := [c for c in wanted if c not in known] + [m for m in compare if m not in COMPARED]:
        raise BenchError(f"unknown case or method: {', '.join(unknown)}")
    require("runc", "criu", "busybox", "python3", *(("podman", "conmon") if "podman" in compare else ()))
    args.wait = 0.5 if args.smoke else 3.0       # seconds of stamps the target writes before the gap is read
    args.rate = args.rate_mbit * 1e6 / 8
    goals = Goals(smoke=args.smoke)
    periodic_ok = knows_flag(runc_ckpt, PARENT_FLAG)
    work = Path(tempfile.mkdtemp(prefix="migrate-bench-", dir=args.dir))
    stamp = work / "stamp"
    hosts: list[Host] = []
    rows: list[str] = []
    try:
        image_tar = busybox_tar(work / "busybox.tar")
        lower = unpack(image_tar, work / "lower")
        stamp.mkdir()
        a, b = Host(work, "a", lower, stamp, runc_ckpt), Host(work, "b", lower, stamp, runc_ckpt)
        hosts = [a, b]
        link = f"{args.rate_mbit:g} Mbit/s (token bucket, burst {BURST >> 10} KiB)" if args.rate else "unpaced"
        print(f"link {link}, streams compressed with {args.compress}; stamps every {TICK * 1000:g} ms; "
              f"best of {args.repeat}", flush=True)
        for i, name in enumerate(wanted):
            case = known[name]
            print(f"\n{case.name}: {case.title}", flush=True)
            if name == "periodic":
                rows += report_periodic(case, run_periodic(a, b, case) if periodic_ok else None, goals)
            else:
                rows += report_case(case, run_case(case, a, b, work, image_tar, args, compare if i == 0 else []),
                                    goals)
    finally:
        for h in hosts:
            h.runc.remove_all()
        umount_under(work)
        shutil.rmtree(work, ignore_errors=True)
    print("\nissue 23's table (two-phase = checkpoint --export - --pre-copy --handshake | restore --import -):")
    for row in rows:
        print(f"  {row}")
    return goals.exit_code()


if __name__ == "__main__":
    run_main(main)
