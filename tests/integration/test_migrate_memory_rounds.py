"""Memory pre-copy rounds of a `--pre-copy` stream with real runc and CRIU (issue 23): a workload that keeps
writing is chased by further --leave-running dumps, each sending only what changed since the round before,
and the target restores the chain pre-checkpoint/ <- pre-checkpoint.1/ <- ... <- checkpoint/.

The workload (DIRTIER_C) keeps rewriting its buffer as a ring, a page's content a function of (page, its
generation), and keeps the generations in memory too; after the restore it checks every page against its
generation, so a page restored from a stale round, or lost, shows.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import wait_for
from tests.integration.migrate_helpers import _finish
from tests.integration.test_incremental_real import PAGES_C, _verify, static_program
from tests.integration.test_migrate_memory_precopy import _status, _stopped, _tmpfs_left, workload_pair
from tests.integration.treekill_helpers import settle_time

# argv: MiB, pages rewritten every 5 ms (the ring). On /burst it rewrites every 10th page (a change
# larger than a round's budget, so a second round runs); on /verify it checks every page against its
# generation and writes "ok <pages>" or "bad <count>" to /result.
DIRTIER_C = PAGES_C + r"""
int main(int argc, char **argv) {
    unsigned long n = strtoul(argv[1], 0, 10) << 8, rate = strtoul(argv[2], 0, 10), pos = 0;
    unsigned char *p = mmap(0, n * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unsigned char *gen = calloc(n, 1), want[PG];
    for (unsigned long i = 0; i < n; i++) fill(p + i * PG, i, 0);
    put("/ready", "");
    for (;;) {
        usleep(5000);
        for (unsigned long k = 0; k < rate; k++, pos = (pos + 1) % n) fill(p + pos * PG, pos, ++gen[pos]);
        if (exists("/burst")) {
            unlink("/burst");
            for (unsigned long i = 0; i < n; i += 10) fill(p + i * PG, i, ++gen[i]);
            put("/bursted", "");
        }
        if (exists("/verify")) {
            unsigned long bad = 0;
            char out[64];
            unlink("/verify");
            for (unsigned long i = 0; i < n; i++) {
                fill(want, i, gen[i]);
                bad += memcmp(want, p + i * PG, PG) != 0;
            }
            snprintf(out, sizeof out, bad ? "bad %lu" : "ok %lu", bad ? bad : n);
            put("/result", out);
        }
    }
}
"""
MIB = 64
RATE = 4                # pages every 5 ms: 3 MiB/s, about 5 % of the buffer a second
FREEZE = re.compile(r"--pre-copy: (\d+) of (\d+) pages changed since pre-checkpoint\.(\d+)/")
ROUNDS = re.compile(r"(\d+) memory rounds after phase 0 \(bytes sent: ([0-9, ]+);.*?\); stopped: ([^\"]+)")


@pytest.fixture(scope="session")
def dirtier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return static_program(tmp_path_factory, "dirtier", DIRTIER_C)


@pytest.mark.parametrize("fault", [None, "memory-round-2:killtree"])
def test_rounds_chase_a_dirtying_workload_and_its_memory_restores_intact(
        make_bundle, containers, tmp_path, busybox_lower, runc_ckpt_bin, dirtier, fault):
    """Stopped before round 1, the workload rewrites a tenth of its pages (over the 5 % budget), so at least
    two rounds run while it keeps writing. With a tree kill before round 2 (round 1 already on the link)
    the target keeps nothing, the source keeps running, and the retry still moves every page intact."""
    a, b, src, dst, cid = workload_pair(make_bundle, containers, tmp_path, busybox_lower, dirtier, [str(MIB), str(RATE)],
                                        "rounds")

    def send(faults: str) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
        r, w = os.pipe()
        ps = subprocess.Popen(a.runc_ckpt(runc_ckpt_bin, "--debug", "checkpoint", "--export", "-", "--pre-copy", cid),
                              stdin=subprocess.DEVNULL, stdout=w, stderr=subprocess.PIPE, start_new_session=True,
                              env=dict(a.env, RUNC_CKPT_FAULT=faults))
        os.close(w)
        pr = subprocess.Popen(b.runc_ckpt(runc_ckpt_bin, "restore", "--import", "-", "--bundle", str(dst.path),
                                          "-d", cid), stdin=r, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env=b.env, start_new_session=True)
        os.close(r)
        wait_for(lambda: _stopped(ps.pid), timeout=120, what="the sender to stop before round 1")
        assert _status(a.root, cid) == "running"
        (src.rootfs / "bursted").unlink(missing_ok=True)
        (src.rootfs / "burst").write_text("")
        wait_for(lambda: (src.rootfs / "bursted").exists(), timeout=30, what="the workload's burst")
        ps.send_signal(signal.SIGCONT)
        return _finish(ps, pr, 180)

    try:
        if fault is not None:
            sent, got = send(f"memory-round-1:pause,{fault}")
            assert sent.returncode == -signal.SIGKILL, sent.stderr
            assert "memory round 1:" in sent.stderr, sent.stderr       # round 1 was on the link
            assert got.returncode != 0 and _status(b.root, cid) is None, got.stderr
            wait_for(lambda: _status(a.root, cid) in ("running", "paused"), timeout=10, what="the source")
            assert _tmpfs_left(cid)
            settle_time()   # the retry (below): the next call on the source sweeps the killed call's tmpfs dir
        sent, got = send("memory-round-1:pause")
        assert sent.returncode == 0, sent.stderr + got.stderr
        assert got.returncode == 0, got.stderr
        m = ROUNDS.search(sent.stderr)
        assert m, sent.stderr
        rounds, sizes = int(m.group(1)), [int(x) for x in m.group(2).split(", ")]
        assert rounds >= 2 and len(sizes) == rounds + 1, m.group(0)
        assert sizes[1] >= (MIB << 20) // 10 > sizes[-1], m.group(0)   # round 1 carried the burst
        # the freeze built on the last round, and the workload ran on after it (CRIU thawed it every round)
        freeze = FREEZE.search(sent.stderr)
        assert freeze and int(freeze.group(3)) == rounds and int(freeze.group(1)) > 0, sent.stderr
        assert _status(b.root, cid) == "running" and _status(a.root, cid) is None
        assert _verify(dst.rootfs) == f"ok {MIB << 8}"
        assert not _tmpfs_left(cid)
    finally:
        for root in (a.root, b.root):
            subprocess.run(["runc", "--root", str(root), "delete", "--force", cid], capture_output=True, check=False)
