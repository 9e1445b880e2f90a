"""Concurrency and kill -9 with the real runc and CRIU: one winner, nothing lost, nobody else harmed.

Every case runs a bystander container that must survive untouched. Kills
use RUNC_CKPT_FAULT=<phase>:kill (runtime/faults.py); the next call must
sweep or recover what the killed one left.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.integration.conftest import COUNTER, runc, wait_for
from tests.integration.test_restore_import_real import restore_env
from tests.reliability_env import leftovers, wait_stopped


class Ops:
    """runc-ckpt calls on one container id, under a private runc root and state dir."""

    def __init__(self, bin_: str, root: Path, tmp: Path) -> None:
        self.bin, self.root, self.tmp = bin_, root, tmp
        self.env = restore_env(tmp)
        self.state = tmp / "state"

    def call(self, *args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
        env = dict(self.env, RUNC_CKPT_FAULT=fault) if fault else self.env
        return subprocess.run([self.bin, "--root", str(self.root), *args], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, env=env, timeout=180, check=False, cwd=self.tmp)

    def checkpoint(self, cid: str, archive: Path, *flags: str, fault: str | None = None):
        return self.call("checkpoint", *flags, "--export", str(archive), cid, fault=fault)

    def restore(self, cid: str, archive: Path, bundle, fault: str | None = None):
        return self.call("restore", "--import", str(archive), "--bundle", str(bundle.path), "-d", cid, fault=fault)


def restore_images(ops: Ops, images: Path, b, cid: str) -> None:
    """runc's own restore from a state-dir image dir (stdio away from the test's pipes)."""
    subprocess.run(["runc", "--root", str(ops.root), "restore", "--image-path", str(images), "--bundle",
                    str(b.path), "-d", cid], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True, timeout=120)


def run_and_export(ops: Ops, containers, b) -> tuple[str, Path]:
    """Start container web from b, let it count, checkpoint --export it (it stops): (id, archive)."""
    cid = containers.run(b, "web")
    wait_for(lambda: b.counter() > 2, what="counter")
    archive = ops.tmp / "A.tar.zst"
    assert ops.checkpoint(cid, archive).returncode == 0
    return cid, archive


def at_once(*calls):
    """Run the calls in threads started together; their results in order."""
    results: list = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def go(i: int) -> None:
        barrier.wait()
        results[i] = calls[i]()
    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.fixture
def world(make_bundle, containers, tmp_path, runc_ckpt_bin):
    """(ops, bundle of the test's container, bystander id, its bundle)."""
    ops = Ops(runc_ckpt_bin, containers.root, tmp_path)
    bystander_bundle = make_bundle(name="bystander")
    bystander = containers.run(bystander_bundle, "bystander")
    wait_for(lambda: bystander_bundle.counter() > 1, what="bystander counter")
    return ops, make_bundle(name="web"), bystander, bystander_bundle


def bystander_ok(containers, bystander, bundle) -> None:
    assert containers.status(bystander) == "running"
    n = bundle.counter()
    wait_for(lambda: bundle.counter() > n, what="bystander counter to go on")


def test_1_concurrent_checkpoints_lose_no_images(world, containers):
    ops, b, bystander, bb = world
    cid = containers.run(b, "web")
    wait_for(lambda: b.counter() > 2, what="counter")
    first = subprocess.Popen([ops.bin, "--root", str(ops.root), "checkpoint", "-R", "--export",
                              str(ops.tmp / "A.tar.zst"), cid], env=ops.env, stdin=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    second = ops.call("checkpoint", "--latest")       # the newest container (web): images in the state dir
    first.wait(120)
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    images = ops.state / cid / "checkpoint"
    assert (images / "inventory.img").is_file()
    before = b.counter()
    restore_images(ops, images, b, cid)
    wait_for(lambda: b.counter() > before, what="counter after restoring the second call's images")
    bystander_ok(containers, bystander, bb)


def test_2_two_restores_under_one_id_have_one_winner(world, make_bundle, containers):
    ops, b, bystander, bb = world
    cid, archive = run_and_export(ops, containers, b)
    p, q = make_bundle(name="P"), make_bundle(name="Q")
    results = at_once(lambda: ops.restore(cid, archive, p), lambda: ops.restore(cid, archive, q))
    assert sorted(r.returncode for r in results) == [0, 1], [r.stderr for r in results]
    winner, loser = (p, q) if results[0].returncode == 0 else (q, p)
    assert containers.status(cid) == "running"
    assert json.loads(runc(ops.root, "state", cid).stdout)["bundle"] == str(winner.path)
    assert not (loser.rootfs / "counter").exists() and not os.listdir(loser.upper)   # never touched
    assert runc(ops.root, "list").returncode == 0
    assert not leftovers(p.path, q.path)
    bystander_ok(containers, bystander, bb)


def test_3_restore_racing_a_run_of_the_same_id_harms_nobody(world, make_bundle, containers):
    ops, b, bystander, bb = world
    cid, archive = run_and_export(ops, containers, b)
    target, other = make_bundle(name="target"), make_bundle(name="other")
    env = dict(ops.env, RUNC_CKPT_FAULT="runc-restore:pause")
    proc = subprocess.Popen([ops.bin, "--root", str(ops.root), "restore", "--import", str(archive), "--bundle",
                             str(target.path), "-d", cid], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_stopped(proc)
    # Paused right after starting runc restore: a `run` of the same id from another bundle races it.
    subprocess.run(["runc", "--root", str(ops.root), "run", "-d", "--bundle", str(other.path), cid],
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    os.kill(proc.pid, signal.SIGCONT)
    _, err = proc.communicate(timeout=120)
    st = runc(ops.root, "state", cid, check=False)
    assert st.returncode == 0, "one of the two containers must stand"
    owner = other if str(other.path) in st.stdout else target
    if owner is other:                      # the run won: restore must have left it alone
        assert proc.returncode != 0 and "did not create" in err, err
        n = other.counter()
        wait_for(lambda: other.counter() > n, what="the other container goes on")
    bystander_ok(containers, bystander, bb)


@pytest.mark.parametrize("pair", ["checkpoint+checkpoint", "checkpoint+delete", "restore+run", "restore+delete"])
def test_pairs_on_one_id_at_the_same_moment(world, make_bundle, containers, pair):
    ops, b, bystander, bb = world
    for round_ in range(2):
        cid = f"web{round_}"
        containers.ids.append(cid)
        bundle = make_bundle(name=f"{pair}-{round_}")
        archive = ops.tmp / f"{pair}-{round_}.tar.zst"
        if pair.startswith("restore"):
            subprocess.run(["runc", "--root", str(ops.root), "run", "-d", "--bundle", str(bundle.path), cid],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            wait_for(lambda: bundle.counter() > 2, what="counter")
            assert ops.checkpoint(cid, archive).returncode == 0
            other = make_bundle(name=f"{pair}-{round_}-other")
            # (the container would inherit a captured stdout: the pipe would never close)
            second = {"run": lambda: subprocess.run(["runc", "--root", str(ops.root), "run", "-d", "--bundle",
                                                     str(other.path), cid], stdin=subprocess.DEVNULL,
                                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                                    check=False),
                      "delete": lambda: runc(ops.root, "delete", "--force", cid, check=False)}[pair.split("+")[1]]
            first, _ = at_once(lambda: ops.restore(cid, archive, bundle), second)
            st = runc(ops.root, "state", cid, check=False)
            if first.returncode == 0 and pair.endswith("run"):
                assert st.returncode == 0 and str(bundle.path) in st.stdout
            assert not leftovers(bundle.path)
        else:
            subprocess.run(["runc", "--root", str(ops.root), "run", "-d", "--bundle", str(bundle.path), cid],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            wait_for(lambda: bundle.counter() > 2, what="counter")
            second = {"checkpoint": lambda: ops.checkpoint(cid, ops.tmp / f"{pair}-{round_}-b.tar.zst", "-R"),
                      "delete": lambda: runc(ops.root, "delete", "--force", cid, check=False)}[pair.split("+")[1]]
            first, other_result = at_once(lambda: ops.checkpoint(cid, archive, "-R"), second)
            if first.returncode == 0:
                info = ops.call("inspect", str(archive))
                assert info.returncode == 0, info.stderr          # what returned 0 is a whole archive
            assert not [n for n in os.listdir(ops.tmp) if ".runc-ckpt-" in n]
        runc(ops.root, "delete", "--force", cid, check=False)
    bystander_ok(containers, bystander, bb)


@pytest.mark.parametrize("phase", ["dump", "export-write", "rename"])
def test_kill_during_checkpoint_then_the_next_call_recovers(world, containers, phase):
    ops, b, bystander, bb = world
    cid = containers.run(b, "web")
    wait_for(lambda: b.counter() > 2, what="counter")
    archive = ops.tmp / "A.tar.zst"
    killed = ops.checkpoint(cid, archive, fault=f"{phase}:kill")
    assert killed.returncode == -signal.SIGKILL
    nxt = ops.call("checkpoint", cid)      # waits for a runc that outlived us, recovers, then fails: it stopped
    assert "container does not exist" in nxt.stderr or nxt.returncode == 0, nxt.stderr
    images = ops.state / cid / "checkpoint"
    assert (images / "inventory.img").is_file(), nxt.stderr
    assert not [n for n in os.listdir(ops.state / cid) if n.startswith(".checkpoint.new-")]
    before = b.counter()
    runc(ops.root, "delete", "--force", cid, check=False)
    restore_images(ops, images, b, cid)
    wait_for(lambda: b.counter() > before, what="counter after restoring the recovered images")
    # The next export into the directory sweeps a killed export's temp file.
    assert ops.checkpoint(cid, ops.tmp / "B.tar.zst", "-R").returncode == 0
    assert not [n for n in os.listdir(ops.tmp) if ".runc-ckpt-" in n]
    bystander_ok(containers, bystander, bb)


@pytest.mark.parametrize("phase", ["staging", "apply", "runc-restore"])
def test_kill_during_restore_then_a_retry_works(world, containers, phase):
    ops, b, bystander, bb = world
    cid, archive = run_and_export(ops, containers, b)
    before = b.counter()
    killed = ops.restore(cid, archive, b, fault=f"{phase}:kill")
    assert killed.returncode == -signal.SIGKILL
    # (an overlay rootfs is another filesystem than the bundle: staging lies inside it, swept by the retry)
    retry = ops.restore(cid, archive, b)
    if phase == "runc-restore":             # runc went on without us: the container came up
        assert retry.returncode == 1 and "already exists" in retry.stderr
    else:
        assert retry.returncode == 0, retry.stderr
    assert containers.status(cid) == "running"
    wait_for(lambda: b.counter() > before, what="counter after restore")
    assert not leftovers(b.path)
    bystander_ok(containers, bystander, bb)


def soak(ops: Ops, containers, b, cycles: int, seed: int) -> dict[str, int]:
    """Checkpoint/restore cycles of one container with a kill -9 in one call of ten."""
    rng = random.Random(seed)
    cid = containers.run(b, "soak")
    wait_for(lambda: b.counter() > 1, what="counter")
    seen = b.counter()
    stats = {"cycles": 0, "kills": 0}
    for i in range(cycles):
        archive = ops.tmp / f"soak-{i % 2}.tar.zst"
        fault = f"{rng.choice(['dump', 'export-write', 'rename'])}:kill" if rng.random() < 0.1 else None
        out = ops.checkpoint(cid, archive, fault=fault)
        if out.returncode != 0:
            stats["kills"] += 1
            ops.call("checkpoint", cid)                 # the next call recovers the stranded images
            if containers.status(cid) is None:
                images = ops.state / cid / "checkpoint"
                restore_images(ops, images, b, cid)
        else:
            assert containers.status(cid) is None
            fault = f"{rng.choice(['staging', 'apply', 'runc-restore'])}:kill" if rng.random() < 0.1 else None
            r = ops.restore(cid, archive, b, fault=fault)
            if r.returncode != 0:
                stats["kills"] += 1
                if containers.status(cid) is None:        # every checkpoint that returned 0 restores
                    r = ops.restore(cid, archive, b)
                    assert r.returncode == 0, r.stderr
        assert containers.status(cid) == "running", f"cycle {i}"
        wait_for(lambda: b.counter() > seen, what=f"counter to grow in cycle {i}")
        assert b.counter() >= seen                      # it only grows
        seen = b.counter()
        stats["cycles"] += 1
    assert not leftovers(b.path), leftovers(b.path)
    assert not [n for n in os.listdir(ops.tmp) if ".runc-ckpt-" in n]
    cdir = ops.state / cid
    assert not [n for n in os.listdir(cdir) if n.startswith((".checkpoint.", "checkpoint.old"))] \
        if cdir.exists() else True
    return stats


def test_soak_checkpoint_restore_cycles_with_random_kills(make_bundle, containers, tmp_path, runc_ckpt_bin):
    cycles = int(os.environ.get("RUNC_CKPT_SOAK_CYCLES", "20"))
    ops = Ops(runc_ckpt_bin, containers.root, tmp_path)
    containers.ids.append("soak")
    stats = soak(ops, containers, make_bundle(args=["sh", "-c", COUNTER], name="soak"), cycles,
                 seed=int(os.environ.get("RUNC_CKPT_SOAK_SEED", "11")))
    assert stats["cycles"] == cycles
