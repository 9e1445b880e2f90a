"""Memory pre-copy of a `--pre-copy` stream with real runc and CRIU (issue 23): phase 0's memory dump
crosses while the container runs, only the pages changed since cross after the freeze.

The workload (test_incremental_real's toucher) fills its buffer, changes a tenth of it (and remaps 64
pages) between phase 0 and the freeze, and checks every page itself after the restore.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from runc_ckpt.runtime import coldpages, memscratch
from runc_ckpt.runtime.criu import images
from tests.integration.conftest import wait_for
from tests.integration.migrate_helpers import _finish, make_host, target_bundle
from tests.integration.test_incremental_real import EVERY, MIB, _verify, toucher  # noqa: F401 (a fixture)
from tests.integration.test_tree_kill_real import start
from tests.integration.test_trust_real import _rewrite
from tests.integration.treekill_helpers import (
    assert_nothing_left,
    assert_runs_once_and_counts_on,
    counter,
    make_tree_host,
    migrate,
    settle_time,
)

SENT = re.compile(r"(\d+) bytes sent, (\d+) of them in [0-9.]+ s after the freeze, phase-0 pause ([0-9.]+) s")


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"


def _status(root: Path, cid: str) -> str | None:
    out = subprocess.run(["runc", "--root", str(root), "state", cid], capture_output=True, text=True, check=False)
    return None if out.returncode else json.loads(out.stdout)["status"]


def _tmpfs_left(cid: str) -> list[str]:
    return glob.glob(os.path.join(memscratch.TMPFS, f".memory-*-{cid}.runc-ckpt-*"))


def workload_pair(make_bundle, containers, tmp_path, busybox_lower, program: Path, args: list[str], prefix: str):
    """Hosts a and b, the static `program` running with `args` on a (once it filled its memory), b's bundle."""
    a, b = make_host(tmp_path, "a", [tmp_path / "volumes"]), make_host(tmp_path, "b", [tmp_path / "volumes"])
    src = make_bundle(args=[f"/{program.name}", *args], name="src")
    subprocess.run(["cp", str(program), str(src.rootfs / program.name)], check=True)
    containers.root = a.root
    cid = containers.run(src, cid=f"{prefix}-{os.urandom(4).hex()}")
    wait_for(lambda: (src.rootfs / "ready").exists(), timeout=30, what="the workload to fill its memory")
    dst = target_bundle(make_bundle, src, busybox_lower)
    return a, b, src, dst, cid


def _toucher_pair(make_bundle, containers, tmp_path, busybox_lower, toucher):  # noqa: F811
    return workload_pair(make_bundle, containers, tmp_path, busybox_lower, toucher, [str(MIB), str(EVERY)], "mem")


def test_memory_crosses_before_the_freeze_and_restores_intact(make_bundle, containers, tmp_path, busybox_lower,
                                                               runc_ckpt_bin, toucher):  # noqa: F811
    a, b, src, dst, cid = _toucher_pair(make_bundle, containers, tmp_path, busybox_lower, toucher)
    r, w = os.pipe()
    ps = subprocess.Popen(a.runc_ckpt(runc_ckpt_bin, "--debug", "checkpoint", "--export", "-", "--pre-copy", cid),
                          stdin=subprocess.DEVNULL, stdout=w, stderr=subprocess.PIPE,
                          env=dict(a.env, RUNC_CKPT_FAULT="phase1-sent:pause"))
    os.close(w)
    pr = subprocess.Popen(b.runc_ckpt(runc_ckpt_bin, "restore", "--import", "-", "--bundle", str(dst.path), "-d",
                                      cid), stdin=r, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=b.env)
    os.close(r)
    try:
        wait_for(lambda: _stopped(ps.pid), timeout=120, what="the sender to stop after phase 0")
        assert _status(a.root, cid) == "running"           # phase 0 left it running
        (src.rootfs / "change").write_text("")
        wait_for(lambda: (src.rootfs / "changed").exists(), timeout=30, what="the workload to change its memory")
        ps.send_signal(signal.SIGCONT)
        sent, got = _finish(ps, pr, 180)
        serr_text = sent.stderr
        assert ps.returncode == 0, serr_text + got.stderr
        assert pr.returncode == 0, got.stderr
        assert "memory pre-copy by content hash" in serr_text, serr_text
        # runc made CRIU's dirs through our fd of the private tmpfs (runtime/privatetmpfs)
        assert re.search(r"phase-0 memory dump into /proc/\d+/fd/\d+: a private tmpfs", serr_text), serr_text
        # on a VM whose host takes back free pages (these), the pages were touched before the freeze
        assert ("pages warmed for the phase-0 memory dump" in serr_text) is coldpages.reported(), serr_text
        total, after, pause = SENT.search(serr_text).groups()
        # 64 MiB of incompressible pages went before the freeze; after it, about a tenth of them and the rest
        assert int(total) > MIB << 20
        assert int(after) < (int(total) - int(after)) // 4, serr_text
        assert 0 < float(pause) < 30
        assert _status(b.root, cid) == "running"
        assert _verify(dst.rootfs) == f"ok {MIB << 8}"
        assert not _tmpfs_left(cid)
    finally:
        subprocess.run(["runc", "--root", str(b.root), "delete", "--force", cid], capture_output=True, check=False)


def _biggest_pagemap(raw: bytes) -> bytes:
    """A pagemap whose largest present range is gone: a parent that lacks pages its child points into."""
    magic, entries = images.load_image(io.BytesIO(raw), "pagemap")
    body = entries[1:]
    biggest = max(range(len(body)), key=lambda i: body[i].get("nr_pages") or 0)
    out = io.BytesIO()
    images.dump_image(magic, [entries[0], *body[:biggest], *body[biggest + 1:]], out)
    return out.getvalue()


@pytest.mark.parametrize("how", ["flipped-page", "parent-lacks-pages"])
def test_a_tampered_or_mismatched_phase_0_is_refused_with_nothing_applied(
        make_bundle, containers, tmp_path, busybox_lower, runc_ckpt_bin, toucher, how):  # noqa: F811
    a, b, src, dst, cid = _toucher_pair(make_bundle, containers, tmp_path, busybox_lower, toucher)
    saved = tmp_path / "stream.tar.zst"
    with open(saved, "wb") as out:
        s = subprocess.run(a.runc_ckpt(runc_ckpt_bin, "--debug", "checkpoint", "--export", "-", "--pre-copy", cid),
                           stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.PIPE, text=True, env=a.env,
                           check=False, timeout=180)
    assert s.returncode == 0, s.stderr
    assert "memory pre-copy by content hash" in s.stderr
    # a stream saved to a file is an archive like any other: inspect reads it, phase 0 included
    shown = subprocess.run([runc_ckpt_bin, "inspect", str(saved)], capture_output=True, text=True, env=b.env,
                           check=False)
    assert shown.returncode == 0, shown.stderr
    digests: dict[str, dict] = {}

    def tamper(name: str, data: bytes) -> bytes | None:
        if how == "flipped-page" and name == "pre-checkpoint/pages-1.img":
            return bytes([data[0] ^ 1]) + data[1:]
        if how == "parent-lacks-pages" and re.fullmatch(r"pre-checkpoint/pagemap-\d+\.img", name):
            data = _biggest_pagemap(data)
            digests[name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            return data
        if name == "runc-ckpt.manifest.json" and digests:   # unsigned: a forger can rewrite the manifest
            doc = json.loads(data)
            for member, digest in digests.items():
                doc["members"][member].update(digest)
            return json.dumps(doc).encode()
        return None

    _rewrite(saved, tamper)
    before = sorted(p.name for p in dst.rootfs.iterdir()), sorted(os.listdir(dst.path))
    r = subprocess.run(b.runc_ckpt(runc_ckpt_bin, "restore", "--import", str(saved), "--bundle", str(dst.path),
                                   "-d", cid), capture_output=True, text=True, env=b.env, check=False, timeout=180)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "level=error" in lines[0], r.stderr
    assert ("pages-1.img" in lines[0]) if how == "flipped-page" else ("does not hold it" in lines[0]), lines[0]
    assert _status(b.root, cid) is None
    assert (sorted(p.name for p in dst.rootfs.iterdir()), sorted(os.listdir(dst.path))) == before
    assert not (dst.rootfs / "toucher").exists()


# Right after phase 0's `runc checkpoint --leave-running` started; inside its CRIU dump (action scripts: the
# first CRIU of a --pre-copy stream is phase 0's); between P0 and round 1 (P0 sent), and inside round 1's
# runc/CRIU dump; between the phases (the rounds sent, before the freeze).
PHASE0_FAULTS = ["memory-dump:killtree", "criu:pre-dump", "criu:network-lock", "criu:post-dump",
                 "memory-round-1:killtree", "memory-round-1:killtree@0.15", "phase1-sent:killtree"]


@pytest.mark.parametrize("fault", PHASE0_FAULTS)
def test_a_tree_kill_in_phase_0_leaves_the_container_running_and_no_dump_in_memory(
        make_bundle, containers, tmp_path, runc_ckpt_bin, fault):
    a, b = make_tree_host(tmp_path, "a", runc_ckpt_bin), make_tree_host(tmp_path, "b", runc_ckpt_bin)
    src, dst = make_bundle(name="src"), make_bundle(name="dst")
    cid = start(a, src)
    hosts = [(a, src), (b, dst)]
    try:
        seen = counter(src)
        sent, got = migrate(a, b, cid, dst, send_fault=fault, send_args=("--pre-copy",))
        assert sent.returncode == -9, sent.stderr
        assert got.returncode != 0 and _status(b.root, cid) is None
        settle_time()
        assert a.status(cid) in ("running", "paused")         # CRIU may have left it frozen: ours to thaw
        assert _tmpfs_left(cid), "the kill came before phase 0's tmpfs dir existed"
        # The engine's retry: the next call on the container thaws it and removes the dump, then migrates.
        sent, got = migrate(a, b, cid, dst, send_args=("--pre-copy",))
        assert sent.returncode == 0 and got.returncode == 0, sent.stderr + got.stderr
        assert_runs_once_and_counts_on(hosts, cid, seen)
        assert not _tmpfs_left(cid)
        assert_nothing_left(hosts, cid, tmp_path)
    finally:
        for h, _ in hosts:
            h.runc("kill", cid, "KILL")
            h.runc("delete", "--force", cid)
