#!/usr/bin/env python3
"""restore --import of rootfs diffs made of many small files: ours vs podman vs the limit, one archive, one run.

A private podman (tests/podman_env.PodmanEnv, runtime: the real runc)
checkpoints a busybox container whose rootfs diff holds N files of K KiB
(1000 per directory) into `checkpoint --export`. That one archive is then
restored, CRIU included, three ways, in turn:
  ours    `runc-ckpt restore --import ARCHIVE --bundle B -d ID` into a plain
          runc bundle holding the busybox image (staging, manifest/layout
          checks, safe extraction, merge, runc restore);
  limit   `zstd -dc ARCHIVE | tar -x` into an empty dir, `tar -x` of its
          rootfs-diff.tar into an equal bundle, then `runc restore` of the
          same images with the config.json ours produced: no checks at all;
  podman  `podman container restore --import ARCHIVE`.
Printed: wall and CPU seconds, peak RSS (largest process of ours' tree, via
a small meter process), ratios against each goal (issue 12):
  50k x 4 KiB   ours <= 0.6 x podman;   200k x 1 KiB   ours <= 1.5 x limit;
  1M x 1 KiB    ours' peak RSS <= 100 MiB.
With --synthetic (for the 1M case: podman and CRIU would spend an hour
writing a million files on this disk) no container is involved: a
podman-layout archive is built with tar | zstd from a generated tree, and
ours is runc-ckpt's whole archive path (restore/importer: stage, verify,
plan, apply) in a child process, against `zstd -dc | tar -x` + `tar -x` of
the inner diff; --dir /dev/shm keeps the file system out of the figures.

The machine's ext4 makes file creation slow right after mass deletions
(the kernel's recently_deleted() inode scan), so each contender waits
--settle seconds after the previous one's clean-up, and they run in the
same order every time. Usage:
  bench/manyfiles_restore_bench.py --files 50000 --kib 4
  bench/manyfiles_restore_bench.py --files 200000 --kib 1
  bench/manyfiles_restore_bench.py --files 1000000 --kib 1 --contenders ours,limit
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = str(Path(__file__).resolve().parent.parent)
sys.path.insert(0, REPO)

# Times a command; prints its exit code, wall seconds, CPU seconds of the tree and the largest ru_maxrss (KiB).
# The command's output goes to a file: a detached container inherits it and would hold a pipe open forever.
METER = ("import resource, subprocess, sys, time; t = time.perf_counter(); log = open(sys.argv[1], 'ab'); "
         "rc = subprocess.run(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log, stderr=log).returncode; "
         "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
         "print(rc, time.perf_counter() - t, u.ru_utime + u.ru_stime, u.ru_maxrss)")
GOALS = {"podman": 0.6, "limit": 1.5, "rss": 100.0}


def metered(argv: list[str], log: str, env: dict | None = None) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MiB) of argv, which must succeed; its output goes to log."""
    os.sync()
    done = subprocess.run([sys.executable, "-c", METER, log, *argv], capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL, check=False)
    try:
        rc, wall, cpu, rss = done.stdout.split()[-4:]
    except ValueError:
        raise SystemExit(f"{argv[0]} meter failed: {done.stderr.strip()[-2000:]}") from None
    if rc != "0":
        raise SystemExit(f"{' '.join(argv[:6])} ... exited {rc}: {Path(log).read_text(errors='replace')[-2000:]}")
    return float(wall), float(cpu), int(rss) / 1024


def write_files(top: str, files: int, kib: int) -> None:
    """N files of K KiB (half random, half zeros), 1000 per directory, like a package tree."""
    pool = os.urandom(1 << 20)
    size = kib * 1024
    for i in range(files):
        d = os.path.join(top, f"d{i // 1000:04d}")
        if i % 1000 == 0:
            os.makedirs(d)
        off = (i * 4099) % (len(pool) - size)
        with open(os.path.join(d, f"f{i:07d}.js"), "wb") as f:
            f.write(pool[off:off + size // 2] + bytes(size - size // 2))


# runc-ckpt's archive path of restore --import, without runc restore (the --synthetic mode).
CHILD = r"""
import os, sys, tempfile
from runc_ckpt.archive import reader
from runc_ckpt.restore import importer
archive, bundle = sys.argv[1], sys.argv[2]
rootfs = os.path.join(bundle, "rootfs")
import_dir = tempfile.mkdtemp(prefix=importer.IMPORT_PREFIX, dir=bundle)
staged = reader.stage(archive, reader.Targets(import_dir, rootfs, importer._VolumeTargets(None, [], False).directory))
staged.verify()
importer._apply(staged, importer._plan_merges(staged))
staged.discard()
"""


def synthetic(args: argparse.Namespace) -> int:
    work = tempfile.mkdtemp(prefix="mfr-synth-", dir=args.dir)
    try:
        stage = os.path.join(work, "stage")
        os.makedirs(os.path.join(stage, "checkpoint"))
        Path(stage, "checkpoint", "inventory.img").write_bytes(b"synthetic")
        Path(stage, "spec.dump").write_text(json.dumps({"ociVersion": "1.0.2", "root": {"path": "rootfs"}}))
        Path(stage, "config.dump").write_text(json.dumps({"id": "synthetic"}))
        Path(stage, "deleted.files").write_text("[]")
        tree = os.path.join(work, "tree")
        print(f"writing {args.files} x {args.kib} KiB files ...", flush=True)
        write_files(os.path.join(tree, "app", "node_modules"), args.files, args.kib)
        archive = os.path.join(work, "archive.tar.zst")
        subprocess.run(f"tar -C '{tree}' -cf '{stage}/rootfs-diff.tar' . && "
                       f"tar -C '{stage}' -cf - . | zstd -q -T0 -3 > '{archive}'", shell=True, check=True)
        shutil.rmtree(tree)
        shutil.rmtree(stage)
        results = {}
        for name in ("ours", "limit"):
            settle(args.settle)
            b = os.path.join(work, name)
            os.makedirs(os.path.join(b, "rootfs", "etc"))
            if name == "ours":
                results[name] = metered([sys.executable, "-c", CHILD, archive, b], os.path.join(work, "log"))
            else:
                results[name] = metered(["sh", "-c", f"zstd -q -dc '{archive}' | tar -x -C '{b}' && "
                                         f"tar -x -f '{b}/rootfs-diff.tar' -C '{b}/rootfs'"], os.path.join(work, "log"))
            shutil.rmtree(b)
        print(f"\nrestore --import archive path (no CRIU), {args.files} x {args.kib} KiB files in {args.dir} "
              f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; noisy)")
        for name, (wall, cpu, rss) in results.items():
            print(f"  {name:7} {wall:7.2f} s wall  {cpu:6.2f} s CPU   peak RSS {rss:6.1f} MiB")
        print(f"  ours/limit {results['ours'][0] / results['limit'][0]:5.2f} (no goal without CRIU)")
        rss = results["ours"][2]
        print(f"  ours peak RSS {rss:.1f} MiB (goal <= {GOALS['rss']:.0f}: {'met' if rss <= GOALS['rss'] else 'MISSED'})")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def settle(seconds: float) -> None:
    os.sync()
    time.sleep(seconds)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--kib", type=int, default=1)
    ap.add_argument("--contenders", default="ours,limit,podman")
    ap.add_argument("--settle", type=float, default=40.0, help="seconds to wait after each clean-up")
    ap.add_argument("--dir", default="/var/tmp")
    ap.add_argument("--synthetic", action="store_true", help="no podman, no CRIU: the archive path alone")
    ap.add_argument("--runs", type=int, default=1, help="rounds of all contenders; the best of each is kept")
    args = ap.parse_args()
    if args.synthetic:
        return synthetic(args)
    contenders = args.contenders.split(",")
    from tests.podman_env import PodmanEnv, build_busybox_tar
    work = tempfile.mkdtemp(prefix="mfr-bench-", dir=args.dir)
    env = PodmanEnv(Path(tempfile.mkdtemp(prefix="mfrp-", dir="/tmp")), shutil.which("runc") or "runc")
    runc_root = os.path.join(work, "runc-root")
    runc_ckpt = os.path.join(os.path.dirname(sys.executable), "runc-ckpt")
    results: dict[str, tuple[float, float, float]] = {}

    def pm(*a: str) -> str:
        return env.podman(*a, timeout=3600).stdout.strip()

    def bundle(name: str) -> str:
        b = os.path.join(work, name)
        os.makedirs(os.path.join(b, "rootfs"))
        subprocess.run(["tar", "-C", os.path.join(b, "rootfs"), "-xf", image_tar], check=True)
        return b

    def drop(cid: str, b: str) -> None:
        subprocess.run(["runc", "--root", runc_root, "kill", cid, "KILL"], capture_output=True, check=False)
        time.sleep(0.3)
        subprocess.run(["runc", "--root", runc_root, "delete", "--force", cid], capture_output=True, check=False)
        shutil.rmtree(b, ignore_errors=True)

    try:
        image_tar = str(build_busybox_tar(Path(work) / "image.tar"))
        env.import_image(Path(image_tar))
        pm("create", "--name", "many", env.image, "/bin/busybox", "sh", "-c",
           "while true; do /bin/busybox sleep 1; done")
        print(f"writing {args.files} x {args.kib} KiB files into the container ...", flush=True)
        write_files(os.path.join(pm("mount", "many"), "app", "node_modules"), args.files, args.kib)
        pm("unmount", "many")
        pm("start", "many")
        export = os.path.join(work, "export.tar.zst")
        t0 = time.monotonic()
        pm("container", "checkpoint", "-e", export, "many")
        print(f"podman checkpoint --export: {time.monotonic() - t0:.1f} s, "
              f"archive {os.path.getsize(export) / 2**20:.1f} MiB", flush=True)
        pm("rm", "-f", "many")
        cfg = os.path.join(work, "runc-ckpt.yaml")
        Path(cfg).write_text("volume_roots: []\n")
        spec = os.path.join(work, "config.json")
        saved: dict[str, object] = {}

        def run_ours() -> tuple[float, float, float]:
            # Its config.json is the limit's (the same container, spec rewritten for a plain bundle).
            b = bundle("ours")
            got = metered([runc_ckpt, "--root", runc_root, "restore", "--import", export,
                           "--bundle", b, "-d", "ours"], os.path.join(work, "ours.log"),
                          env=dict(os.environ, RUNC_CKPT_CONFIG=cfg))
            if not saved:
                saved["bundle"] = b
                saved["root_mode"] = os.stat(os.path.join(b, "rootfs")).st_mode & 0o7777  # CRIU checks it
                shutil.copy(os.path.join(b, "config.json"), spec)
                if os.path.isdir(os.path.join(b, ".runc-ckpt-binds")):  # hosts, resolv.conf... the spec points at
                    shutil.copytree(os.path.join(b, ".runc-ckpt-binds"), binds, symlinks=True)
            drop("ours", b)
            return got

        def run_limit() -> tuple[float, float, float]:
            b = bundle("limit")
            images = os.path.join(work, "limit-import")
            os.makedirs(images)
            doc = json.loads(Path(spec).read_text().replace(str(saved["bundle"]), b))
            doc.setdefault("linux", {})["cgroupsPath"] = "/runc-ckpt-bench-limit"   # not ours' (maybe still busy)
            Path(b, "config.json").write_text(json.dumps(doc))
            os.chmod(os.path.join(b, "rootfs"), int(saved["root_mode"]))  # type: ignore[call-overload]
            if os.path.isdir(binds):
                shutil.copytree(binds, os.path.join(b, ".runc-ckpt-binds"), symlinks=True)
            script = (f"zstd -q -dc '{export}' | tar -x -C '{images}' && "
                      f"tar -x -f '{images}/rootfs-diff.tar' -C '{b}/rootfs' && "
                      f"runc --root '{runc_root}' restore --image-path '{images}/checkpoint' "
                      f"--work-path '{images}/work' --bundle '{b}' -d limit")
            try:
                got = metered(["sh", "-c", script], os.path.join(work, "limit.log"))
            except SystemExit:
                log = Path(images, "work", "restore.log")
                print("\n".join(log.read_text(errors="replace").splitlines()[-15:]) if log.exists() else "")
                raise
            drop("limit", b)
            shutil.rmtree(images, ignore_errors=True)
            return got

        def run_podman() -> tuple[float, float, float]:
            os.sync()
            t0 = time.monotonic()
            pm("container", "restore", "--import", export)
            got = (time.monotonic() - t0, 0.0, 0.0)
            pm("rm", "-f", "many")
            return got

        binds = os.path.join(work, "binds")
        runners = {"ours": run_ours, "limit": run_limit, "podman": run_podman}
        settle(args.settle)
        for _ in range(args.runs):                 # in turn, the best wall time of each is kept
            for name in ["ours"] + [c for c in ("limit", "podman") if c in contenders]:
                got = runners[name]()
                if name not in results or got[0] < results[name][0]:
                    results[name] = got
                settle(args.settle)

        print(f"\nrestore --import of {args.files} x {args.kib} KiB files, best of {args.runs} "
              f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; a shared machine: noisy)")
        for name, (wall, cpu, rss) in results.items():
            extra = f"  {cpu:6.2f} s CPU   peak RSS {rss:6.1f} MiB" if name != "podman" else ""
            print(f"  {name:7} {wall:7.2f} s wall{extra}")
        ours = results["ours"][0]
        for ref in ("podman", "limit"):
            if ref in results:
                ratio = ours / results[ref][0]
                print(f"  ours/{ref:7} {ratio:5.2f}   (goal <= {GOALS[ref]}: "
                      f"{'met' if ratio <= GOALS[ref] else 'MISSED'})")
        rss = results["ours"][2]
        print(f"  ours peak RSS {rss:.1f} MiB (goal <= {GOALS['rss']:.0f}: "
              f"{'met' if rss <= GOALS['rss'] else 'MISSED'})")
        return 0
    finally:
        for cid in ("ours", "limit"):
            subprocess.run(["runc", "--root", runc_root, "delete", "--force", cid], capture_output=True, check=False)
        env.teardown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
