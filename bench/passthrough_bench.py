#!/usr/bin/env python3
"""Benchmark pass-through: `runc-ckpt --root R state ID` against `runc --root R state ID` (and `list`).

Run (as root: it starts a container):
    python bench/passthrough_bench.py                  # 300 iterations of each
    python bench/passthrough_bench.py --iterations 1000 --runc-ckpt /usr/local/bin/runc-ckpt
    python bench/passthrough_bench.py --smoke          # 10 iterations, no goal check

A busybox-static container (`sleep`) is started with the real runc under a
private --root; then direct and wrapped calls alternate, so both see the
same machine load. Printed: median and mean wall time per call of each, and
the ratio of medians wrapped/direct. Goal: ratio <= 1.5 for `state`
(podman calls `state` all the time). Exit 3 if the goal is missed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from _common import RUN, Goals, Runc, add_common_args, busybox_tar, check_runc_ckpt, make_spec, run_main, scaled, unpack

GOAL = 1.5


def call(argv: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True)
    return time.perf_counter() - t


def compare(direct: list[str], wrapped: list[str], iterations: int, warmup: int) -> tuple[list[float], list[float]]:
    """Alternate the two commands (after a warm-up) and return their wall times."""
    for _ in range(warmup):
        call(direct)
        call(wrapped)
    d, w = [], []
    for i in range(iterations):
        # Alternate which goes first so neither always follows the other.
        if i % 2:
            d.append(call(direct))
            w.append(call(wrapped))
        else:
            w.append(call(wrapped))
            d.append(call(direct))
    return d, w


def report(name: str, d: list[float], w: list[float]) -> float:
    ratio = statistics.median(w) / statistics.median(d)
    ms = 1000
    print(f"{name:6} direct runc: median {statistics.median(d) * ms:6.2f} ms  mean {statistics.mean(d) * ms:6.2f} ms")
    print(f"{name:6} runc-ckpt:   median {statistics.median(w) * ms:6.2f} ms  mean {statistics.mean(w) * ms:6.2f} ms")
    return ratio


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=None, help="calls of each (default 300, x --scale)")
    add_common_args(ap)
    args = ap.parse_args()
    runc_ckpt = check_runc_ckpt(args.runc_ckpt)
    iterations = args.iterations or (10 if args.smoke else scaled(300, args.scale, 10))
    goals = Goals(smoke=args.smoke)
    base = Path(tempfile.mkdtemp(prefix="runc-ckpt-ptbench-"))
    runc = Runc(base / "root")
    cid = f"ptbench-{RUN}"
    try:
        bundle = base / "bundle"
        unpack(busybox_tar(base / "busybox.tar"), bundle / "rootfs")
        (bundle / "config.json").write_text(json.dumps(make_spec(["/bin/sleep", "100000"])))
        runc.run_detached(bundle, cid)
        print(f"runc {runc.binary}, runc-ckpt {runc_ckpt}, {iterations} iterations each")
        warmup = 2 if args.smoke else 10
        d, w = compare(runc.argv("state", cid), [runc_ckpt, "--root", str(runc.root), "state", cid], iterations,
                       warmup)
        state_ratio = report("state", d, w)
        d, w = compare(runc.argv("list"), [runc_ckpt, "--root", str(runc.root), "list"], iterations, warmup)
        list_ratio = report("list", d, w)
        print(goals.check("state: runc-ckpt/runc (medians)", state_ratio, GOAL))
        print(goals.check("list:  runc-ckpt/runc (medians)", list_ratio, None))
        return goals.exit_code()
    finally:
        runc.remove_all()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    run_main(main)
