#!/usr/bin/env python3
"""restore --import of rootfs diffs made of many small files: ours vs podman vs the limit, one archive, one run.

A private podman (bench/_common.PodmanEnv, runtime: the real runc under a
private root) checkpoints a busybox container whose rootfs diff holds N files
of K KiB (1000 per directory) into `checkpoint --export`. That one archive is
then restored, CRIU included, three ways, in turn:
  ours    `runc-ckpt restore --import ARCHIVE --bundle B -d ID` into a plain
          runc bundle holding the busybox image (staging, manifest/layout
          checks, safe extraction, merge, runc restore);
  limit   `zstd -dc ARCHIVE | tar -x` into an empty dir, `tar -x` of its
          rootfs-diff.tar into an equal bundle, then `runc restore` of the
          same images with the config.json ours produced: no checks at all;
  podman  `podman container restore --import ARCHIVE`.
Printed: wall and CPU seconds, peak RSS (the largest process of ours' tree,
via a small meter process, bench/_common.METER), ratios against each goal (issue 12):
  50k x 4 KiB and 200k x 1 KiB   ours <= 0.6 x podman and <= 1.25 x limit (issue 22);
  1M x 1 KiB    ours' peak RSS <= 100 MiB.
With --synthetic (for the 1M case: podman and CRIU would spend an hour
writing a million files on this disk) podman is not involved: the files are
written straight into the overlay upper dir of a plain runc container, whose
archive `runc-ckpt checkpoint --export` makes (not timed); ours and the
limit then restore that archive as above, end to end through the command
line (this mode used to time runc-ckpt's archive path in-process, without
CRIU; the restore of a sleeping busybox adds a fraction of a second);
--dir /dev/shm keeps the file system out of the figures.
--content picks the files' bytes: half-random (the default: each file half
random, half zeros, about 2:1) or compressible (log-like text, about 4:1).
--memory-mib N makes the container hold N MiB of heap-like memory (a static
filler, bench/_common.FILLER_C) instead of sleeping, so CRIU's pages weigh
in as well (the issue's row: 50k x 4 KiB half-random, --memory-mib 64).

The machine's ext4 makes file creation slow right after mass deletions
(the kernel's recently_deleted() inode scan), so each contender waits
--settle seconds after the previous one's clean-up, and they run in the
same order every time. Usage:
  bench/manyfiles_restore_bench.py --files 50000 --kib 4
  bench/manyfiles_restore_bench.py --files 200000 --kib 1 --content compressible
  bench/manyfiles_restore_bench.py --files 50000 --kib 4 --memory-mib 64 --runs 2
  bench/manyfiles_restore_bench.py --files 1000000 --kib 1 --synthetic --dir /dev/shm
  bench/manyfiles_restore_bench.py --smoke
Exit 3 if a goal is missed (never in --smoke).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from _common import (
    RUN,
    BenchError,
    Goals,
    Metered,
    PodmanEnv,
    Runc,
    add_common_args,
    build_memfill,
    busybox_tar,
    check_runc_ckpt,
    metered,
    overlay_bundle,
    ratio,
    real_runc,
    require,
    run_main,
    runc_ckpt_config,
    scaled,
    settle,
    sh,
    umount_under,
    unpack,
    wait_file,
    write_small_files,
)

GOALS = {"podman": 0.6, "limit": 1.25, "rss": 100.0}   # issue 22: 50k x 4 KiB and 200k x 1 KiB
OURS, LIMIT, SOURCE = f"ours-{RUN}", f"limit-{RUN}", f"source-{RUN}"     # runc container IDs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=None, help="number of files (default 20000, x --scale)")
    ap.add_argument("--kib", type=int, default=1)
    ap.add_argument("--contenders", default="ours,limit,podman")
    ap.add_argument("--settle", type=float, default=None, help="seconds to wait after each clean-up (default 40)")
    ap.add_argument("--dir", default="/var/tmp")
    ap.add_argument("--synthetic", action="store_true",
                    help="no podman: the archive is runc-ckpt's export of a plain runc container")
    ap.add_argument("--runs", type=int, default=1, help="rounds of all contenders; the best of each is kept")
    ap.add_argument("--content", choices=("half-random", "compressible"), default="half-random",
                    help="the files' bytes: half random, half zeros (default), or log-like text")
    ap.add_argument("--memory-mib", type=int, default=0,
                    help="MiB of process memory the container holds (default 0: a sleeping shell)")
    add_common_args(ap)
    args = ap.parse_args()
    runc_ckpt = check_runc_ckpt(args.runc_ckpt)
    files = args.files or (300 if args.smoke else scaled(20000, args.scale))
    pause = args.settle if args.settle is not None else (0 if args.smoke else 40)
    contenders = [c for c in args.contenders.split(",") if c and not (args.synthetic and c == "podman")]
    require("runc", "criu", "tar", "zstd", "busybox", *(() if args.synthetic else ("podman", "conmon")),
            *(("gcc",) if args.memory_mib else ()))
    compressible = args.content == "compressible"
    goals = Goals(smoke=args.smoke)
    work = Path(tempfile.mkdtemp(prefix="mfr-bench-", dir=args.dir))
    # Not under work: podman refuses a runroot path longer than 50 characters.
    pm = None if args.synthetic else PodmanEnv(Path(tempfile.mkdtemp(prefix="rcmf-", dir="/tmp")), real_runc())
    runc = Runc(work / "runc-root")
    env = runc_ckpt_config(work / "runc-ckpt.yaml", work / "state")
    results: dict[str, Metered] = {}
    export = work / "export.tar.zst"
    spec = work / "config.json"
    binds = work / "binds"
    saved: dict[str, object] = {}

    def bundle(name: str) -> Path:
        b = work / name
        unpack(image_tar, b / "rootfs")
        return b

    def drop(cid: str, b: Path) -> None:
        runc.remove(cid)
        shutil.rmtree(b, ignore_errors=True)

    def run_ours() -> Metered:
        b = bundle("ours")
        got = metered([runc_ckpt, "--root", str(runc.root), "restore", "--import", str(export), "--bundle", str(b),
                       "-d", OURS], env=env)
        if not (b / "rootfs" / "app" / "node_modules").is_dir():
            raise BenchError("ours did not apply the rootfs diff")
        if not saved:     # the limit restores with ours' config.json (the spec rewritten for a plain bundle)
            saved["bundle"] = str(b)
            saved["root_mode"] = (b / "rootfs").stat().st_mode & 0o7777  # CRIU checks it
            shutil.copy(b / "config.json", spec)
            if (b / ".runc-ckpt-binds").is_dir():  # hosts, resolv.conf... the spec points at
                shutil.copytree(b / ".runc-ckpt-binds", binds, symlinks=True)
        drop(OURS, b)
        return got

    def run_limit() -> Metered:
        b = bundle("limit")
        images = work / "limit-import"
        images.mkdir()
        doc = json.loads(spec.read_text().replace(str(saved["bundle"]), str(b)))
        doc.setdefault("linux", {})["cgroupsPath"] = f"/runc-ckpt-bench-{LIMIT}"   # not ours' (maybe still busy)
        (b / "config.json").write_text(json.dumps(doc))
        (b / "rootfs").chmod(int(saved["root_mode"]))  # type: ignore[call-overload]
        if binds.is_dir():
            shutil.copytree(binds, b / ".runc-ckpt-binds", symlinks=True)
        script = (f"zstd -q -dc '{export}' | tar -x -C '{images}' && "
                  f"tar -x -f '{images}/rootfs-diff.tar' -C '{b}/rootfs' && "
                  f"{runc.binary} --root '{runc.root}' restore --image-path '{images}/checkpoint' "
                  f"--work-path '{images}/work' --bundle '{b}' -d {LIMIT}")
        try:
            got = metered(["sh", "-c", script])
        except BenchError:
            log = images / "work" / "restore.log"
            print("\n".join(log.read_text(errors="replace").splitlines()[-15:]) if log.exists() else "")
            raise
        drop(LIMIT, b)
        shutil.rmtree(images, ignore_errors=True)
        return got

    def run_podman() -> Metered:
        assert pm is not None
        settle(0)
        t0 = time.perf_counter()
        pm("container", "restore", "--import", str(export))
        got = Metered(time.perf_counter() - t0, 0.0, 0.0)
        pm("rm", "-f", "-t", "0", "many")
        return got

    try:
        extra = {"bin/memfill": str(build_memfill(work))} if args.memory_mib else None
        image_tar = busybox_tar(work / "image.tar", extra)
        # The filler marks readiness with /ready in the container (its upper dir).
        command = (["/bin/memfill", str(args.memory_mib), "/ready"] if args.memory_mib else
                   ["/bin/busybox", "sh", "-c", "while true; do /bin/busybox sleep 1; done"])
        print(f"writing {files} x {args.kib} KiB files ({args.content}), memory {args.memory_mib} MiB ...", flush=True)
        t0 = time.perf_counter()
        if pm is not None:
            pm.import_image(image_tar)
            pm("create", "--name", "many", pm.image, *command)
            write_small_files(os.path.join(pm("mount", "many"), "app", "node_modules"), files, args.kib,
                              compressible=compressible)
            pm("unmount", "many")
            pm("start", "many")
            if args.memory_mib:
                upper = Path(pm("inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", "many"))
                wait_file(upper / "ready", "the memory filler")
            pm("container", "checkpoint", "-e", str(export), "many")
            pm("rm", "-f", "-t", "0", "many")
            made = "podman checkpoint --export"
        else:
            lower = unpack(image_tar, work / "lower")
            src = overlay_bundle(work / "source", lower, command)
            write_small_files(str(src / "upper" / "app" / "node_modules"), files, args.kib,
                              compressible=compressible)
            runc.run_detached(src, SOURCE)
            if args.memory_mib:
                wait_file(src / "upper" / "ready", "the memory filler")
            sh(runc_ckpt, "--root", str(runc.root), "checkpoint", "--export", str(export), SOURCE, env=env)
            runc.remove(SOURCE)
            umount_under(src)
            shutil.rmtree(src)
            made = "runc-ckpt checkpoint --export"
        print(f"{made} (with the writing): {time.perf_counter() - t0:.1f} s, "
              f"archive {export.stat().st_size / 2**20:.1f} MiB", flush=True)

        runners = {"ours": run_ours, "limit": run_limit, "podman": run_podman}
        settle(pause)
        for _ in range(args.runs):                 # in turn, the best wall time of each is kept
            for name in ["ours"] + [c for c in ("limit", "podman") if c in contenders]:
                got = runners[name]()
                if name not in results or got.wall < results[name].wall:
                    results[name] = got
                settle(pause)

        print(f"\nrestore --import of {files} x {args.kib} KiB files ({args.content}), memory {args.memory_mib} MiB "
              f"({made}), best of {args.runs} "
              f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; a shared machine: noisy)")
        for name, m in results.items():
            extra = f"  {m.cpu:6.2f} s CPU   peak RSS {m.rss:6.1f} MiB" if name != "podman" else ""
            print(f"  {name:7} {m.wall:7.2f} s wall{extra}")
        ours = results["ours"].wall
        for ref in ("podman", "limit"):
            if ref in results:
                print("  " + goals.check(f"ours/{ref}", ratio(ours, results[ref].wall), GOALS[ref]))
        print("  " + goals.check("ours peak RSS", results["ours"].rss, GOALS["rss"], " MiB"))
        return goals.exit_code()
    finally:
        runc.remove_all()
        if pm is not None:
            pm.teardown()
        umount_under(work)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    run_main(main)
