"""The shared reliability helpers: signal deferral, atomic write + sweep, locks, the restore journal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from runc_ckpt.archive import safeextract
from runc_ckpt.base import signals
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.runtime import atomicfile, lock
from runc_ckpt.state import journaledmerge, transaction
from tests.hostile.harness import snapshot

# ---------------------------------------------------------------- signals


def test_a_deferred_signal_is_reported_not_fatal():
    with signals.deferred() as d:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
    assert (d.signame, d.exit_code) == ("SIGTERM", 143)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_interrupt_mode_raises_at_once_but_holds_over_a_critical_section():
    done = []
    with pytest.raises(signals.Interrupted) as e:
        with signals.deferred(interrupt=True) as d:
            with d.critical():
                os.kill(os.getpid(), signal.SIGHUP)
                done.append("critical part finished")
            done.append("not reached")
    assert done == ["critical part finished"] and e.value.signame == "SIGHUP"
    with pytest.raises(signals.Interrupted):
        with signals.deferred(interrupt=True):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
            pytest.fail("the signal did not interrupt")


def test_signals_are_forwarded_to_the_child_while_it_runs():
    with signals.deferred() as d:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        with d.forwarding(child):
            os.kill(os.getpid(), signal.SIGTERM)
            assert child.wait(timeout=10) == -signal.SIGTERM
    assert d.signum == signal.SIGTERM


# ---------------------------------------------------------------- atomic write


def test_atomic_write_leaves_old_file_on_failure_and_new_file_on_success(tmp_path):
    target = tmp_path / "config.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomicfile.writing(str(target)) as f:
            f.write(b"half")
            raise RuntimeError("disk on fire")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["config.json"]
    atomicfile.write_json(str(target), {"new": 1})
    assert target.read_text() == '{\n  "new": 1\n}' and oct(target.stat().st_mode & 0o777) == "0o644"


def test_only_the_lock_holder_record_skips_the_fsyncs(tmp_path, monkeypatch):
    """An atomic write fsyncs the file and its dir; the lock's holder record (read only while the flock,
    which no crash outlives, is held) is written whole by the rename alone, and still names its holder."""
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    atomicfile.write_json(str(tmp_path / "a.json"), {"durable": 1})
    assert len(synced) == 2
    synced.clear()
    key = lock.container_key("/run/runc", "web")
    with lock.hold(str(tmp_path), key, "checkpoint --export", 1):
        assert synced == []
        holder = tmp_path / lock.LOCK_DIR / f"{key}.holder"
        assert f'"pid": {os.getpid()}' in holder.read_text()
        assert lock._holder(str(holder)).startswith(f"runc-ckpt pid {os.getpid()} (checkpoint --export")


def test_sweep_removes_a_dead_writers_temp_file_but_never_a_live_one(tmp_path):
    dead = tmp_path / ".a.tar.runc-ckpt-deadbeef.tmp"
    dead.write_bytes(b"x")
    with atomicfile.writing(str(tmp_path / "b.tar")) as f:
        f.write(b"in progress")
        assert atomicfile.sweep(str(tmp_path)) == [str(dead)]
        assert len(os.listdir(tmp_path)) == 1               # ours survived the sweep
    assert os.listdir(tmp_path) == ["b.tar"]


def test_a_name_whose_temp_name_cannot_exist_is_refused(tmp_path):
    atomicfile.check_name(str(tmp_path / ("x" * (255 - atomicfile.temp_name_length("")))))
    with pytest.raises(ValueError, match="with runc-ckpt's temp name"):
        atomicfile.check_name(str(tmp_path / ("x" * 248)))


# ---------------------------------------------------------------- locks


def test_a_second_holder_waits_then_fails_naming_the_first(tmp_path):
    key = lock.container_key("/run/runc", "web")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from runc_ckpt.runtime import lock\n"
        f"with lock.hold({str(tmp_path)!r}, {key!r}, 'checkpoint --export', 5):\n"
        "    print('held', flush=True); time.sleep(30)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        t0 = time.monotonic()
        with pytest.raises(RuncCkptError, match=rf"container web is busy: runc-ckpt pid {holder.pid} "
                                                r"\(checkpoint --export, since"):
            with lock.hold(str(tmp_path), key, "restore", 0.3, what="container web"):
                pass
        assert 0.3 <= time.monotonic() - t0 < 3
    finally:
        holder.kill()
        holder.wait()
    with lock.hold(str(tmp_path), key, "restore", 0.3):    # the kernel freed it with its holder
        pass


def test_keys_differ_by_runc_root_and_id():
    assert len({lock.container_key("/run/runc", "a"), lock.container_key("/run/other", "a"),
                lock.container_key("/run/runc", "b"), lock.bundle_key("/run/runc")}) == 4


# ---------------------------------------------------------------- journal


def test_a_journaled_merge_is_undone_exactly_even_by_another_process(tmp_path):
    target = tmp_path / "rootfs"
    (target / "etc").mkdir(parents=True)
    (target / "etc" / "keep").write_text("old\n")
    (target / "replaced").write_text("old\n")
    (target / "deleted").write_text("old\n")
    staging = tmp_path / "import" / "staging"
    (staging / "etc").mkdir(parents=True)
    (staging / "etc" / "new").write_text("new\n")
    (staging / "replaced").write_text("new\n")
    before = snapshot(target)
    j = transaction.Journal(str(tmp_path / "import"))
    with safeextract.Root(str(staging), "s") as s, safeextract.Root(str(target), "t") as t:
        plan = safeextract.plan_merge(s, t, [], ["/deleted"], "test")
        journaledmerge.apply_merge(j, s, t, plan, {}, safeextract.Extracted(), str(tmp_path / "import" / "undo"))
    j.close()
    assert (target / "etc" / "new").exists() and not (target / "deleted").exists()
    assert transaction.undo(transaction.read(str(tmp_path / "import"))) == []
    assert snapshot(target) == before
