"""Benchmark pass-through: `runc-ckpt --root R state ID` against `runc --root R state ID` (and `list`).

Run (as root: it starts a container):
    python bench/passthrough_bench.py                  # 300 iterations of each
    python bench/passthrough_bench.py --iterations 1000 --runc-ckpt /usr/local/bin/runc-ckpt

A busybox-static container (`sleep`) is started with the real runc under a
private --root; then direct and wrapped calls alternate, so both see the
same machine load. Printed: median and mean wall time per call of each, and
the ratio of medians wrapped/direct. Target: ratio <= 1.5 for `state`
(podman calls `state` all the time). Exit 1 if the target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

TARGET = 1.5


def default_runc_ckpt() -> str:
    return os.environ.get("RUNC_CKPT_BIN") or os.path.join(os.path.dirname(sys.executable), "runc-ckpt")


def make_bundle(base: str, runc: str) -> str:
    """A bundle whose rootfs holds busybox-static and a `sleep` link."""
    bundle = os.path.join(base, "bundle")
    rootfs = os.path.join(bundle, "rootfs")
    for d in ("bin", "proc", "sys", "dev", "tmp"):
        os.makedirs(os.path.join(rootfs, d))
    shutil.copy2(shutil.which("busybox") or "/bin/busybox", os.path.join(rootfs, "bin", "busybox"))
    os.symlink("busybox", os.path.join(rootfs, "bin", "sleep"))
    subprocess.run([runc, "spec"], cwd=bundle, check=True)
    path = os.path.join(bundle, "config.json")
    with open(path, encoding="utf-8") as f:
        spec = json.load(f)
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["/bin/sleep", "100000"]
    spec["root"]["readonly"] = False
    with open(path, "w", encoding="utf-8") as f:
        json.dump(spec, f)
    return bundle


def timed(argv: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True)
    return time.perf_counter() - t


def compare(direct: list[str], wrapped: list[str], iterations: int) -> tuple[list[float], list[float]]:
    """Alternate the two commands (after a warm-up) and return their wall times."""
    for _ in range(10):
        timed(direct)
        timed(wrapped)
    d, w = [], []
    for i in range(iterations):
        # Alternate which goes first so neither always follows the other.
        if i % 2:
            d.append(timed(direct))
            w.append(timed(wrapped))
        else:
            w.append(timed(wrapped))
            d.append(timed(direct))
    return d, w


def report(name: str, d: list[float], w: list[float]) -> float:
    ratio = statistics.median(w) / statistics.median(d)
    ms = 1000
    print(f"{name:6} direct runc: median {statistics.median(d) * ms:6.2f} ms  mean {statistics.mean(d) * ms:6.2f} ms")
    print(f"{name:6} runc-ckpt:   median {statistics.median(w) * ms:6.2f} ms  mean {statistics.mean(w) * ms:6.2f} ms")
    print(f"{name:6} ratio runc-ckpt/runc (medians): {ratio:.3f}")
    return ratio


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--runc-ckpt", default=default_runc_ckpt(), help="the front end to measure")
    ap.add_argument("--runc", default=shutil.which("runc", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"))
    args = ap.parse_args()
    if not args.runc or not os.access(args.runc_ckpt, os.X_OK):
        print(f"need runc ({args.runc}) and runc-ckpt ({args.runc_ckpt})", file=sys.stderr)
        return 1
    base = tempfile.mkdtemp(prefix="runc-ckpt-ptbench-")
    root = os.path.join(base, "root")
    cid = f"ptbench-{os.getpid()}"
    try:
        bundle = make_bundle(base, args.runc)
        subprocess.run([args.runc, "--root", root, "run", "-d", "--bundle", bundle, cid],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        print(f"runc {args.runc}, runc-ckpt {args.runc_ckpt}, {args.iterations} iterations each")
        d, w = compare([args.runc, "--root", root, "state", cid], [args.runc_ckpt, "--root", root, "state", cid],
                       args.iterations)
        state_ratio = report("state", d, w)
        d, w = compare([args.runc, "--root", root, "list"], [args.runc_ckpt, "--root", root, "list"],
                       args.iterations)
        report("list", d, w)
        ok = state_ratio <= TARGET
        print(f"state ratio {state_ratio:.3f}: target <= {TARGET}: {'met' if ok else 'MISSED'}")
        return 0 if ok else 1
    finally:
        subprocess.run([args.runc, "--root", root, "delete", "--force", cid],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
