"""Run every benchmark in bench/ (each *_bench.py) with this Python, one after another.

`make bench` runs this. Each benchmark prints its own figures and targets;
this prints a summary and exits 1 if any benchmark failed or missed its
target (a benchmark says so by its exit code).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time


def main() -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    benches = sorted(f for f in os.listdir(here) if f.endswith("_bench.py"))
    results = []
    for name in benches:
        print(f"=== {name}", flush=True)
        t = time.perf_counter()
        rc = subprocess.run([sys.executable, os.path.join(here, name)], check=False).returncode
        results.append((name, rc, time.perf_counter() - t))
        print(flush=True)
    print("=== summary")
    for name, rc, secs in results:
        print(f"{name:28} {'ok' if rc == 0 else f'FAILED (exit {rc})':18} {secs:7.1f}s")
    return 0 if results and all(rc == 0 for _, rc, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
