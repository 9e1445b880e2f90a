#!/usr/bin/env python3
"""Run every benchmark in bench/ (each *_bench.py) with this Python, one after another.

    bench/run.py                      # `make bench`: the default sizes, goals checked
    bench/run.py --smoke              # `make bench-smoke`: tiny sizes, no goal checks, each bench time-limited
    bench/run.py --scale 0.25         # every bench at a quarter of its default sizes
    bench/run.py --only checkpoint,migrate --runc-ckpt /usr/local/bin/runc-ckpt

Every bench drives runc-ckpt through its command line only (the installed
front end, or --runc-ckpt) and prints its own figures, ratios and goals. This
prints a summary and exits 1 if any bench failed, or (not in smoke mode)
missed a goal: a bench says so by its exit code (bench/_common.py:
0 ok, 3 a goal missed, anything else failed).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from _common import GOAL_MISSED, default_runc_ckpt

SMOKE_TIMEOUT = 300     # seconds per bench in smoke mode: a hang must fail `make test`, not stall it


def main() -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    benches = sorted(f for f in os.listdir(here) if f.endswith("_bench.py"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="every bench in smoke mode")
    ap.add_argument("--scale", type=float, default=None, help="passed to every bench")
    ap.add_argument("--runc-ckpt", default=default_runc_ckpt(), help="the runc-ckpt command to measure")
    ap.add_argument("--only", default="", help="comma-separated bench names (e.g. checkpoint,migrate)")
    args = ap.parse_args()
    if args.only:
        wanted = {n.strip().removesuffix(".py").removesuffix("_bench") for n in args.only.split(",")}
        benches = [b for b in benches if b.removesuffix("_bench.py") in wanted]
    extra = ["--runc-ckpt", args.runc_ckpt]
    if args.smoke:
        extra.append("--smoke")
    if args.scale is not None:
        extra += ["--scale", str(args.scale)]
    results = []
    t_all = time.perf_counter()
    for name in benches:
        print(f"=== {name}", flush=True)
        t = time.perf_counter()
        proc = subprocess.Popen([sys.executable, os.path.join(here, name), *extra], stdin=subprocess.DEVNULL)
        try:
            rc = proc.wait(timeout=SMOKE_TIMEOUT if args.smoke else None)
        except subprocess.TimeoutExpired:
            print(f"{name}: timed out after {SMOKE_TIMEOUT} s: SIGTERM (it cleans up), then SIGKILL", flush=True)
            proc.terminate()
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            rc = -1
        results.append((name, rc, time.perf_counter() - t))
        print(flush=True)
    print(f"=== summary{' (smoke: goals not checked)' if args.smoke else ''}")
    for name, rc, secs in results:
        state = "ok" if rc == 0 else "goal MISSED" if rc == GOAL_MISSED else f"FAILED (exit {rc})"
        print(f"{name:30} {state:18} {secs:7.1f}s")
    print(f"{'total':30} {'':18} {time.perf_counter() - t_all:7.1f}s")
    return 0 if results and all(rc == 0 for _, rc, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
