"""migrate.delta: what a pre-copy resends after the freeze, on a real directory tree."""

from __future__ import annotations

import os
import time

from runc_ckpt.archive.scan import Scanner
from runc_ckpt.migrate import delta


def _plan(root):
    s = Scanner()
    s.walk(str(root))
    return s.plan()


def _old(path, seconds=5):
    t = time.time() - seconds
    os.utime(path, (t, t))


def _names(tree):
    return sorted(e.name for e in tree.entries)


def _settled(tmp_path):
    """Snapshot after the racy window has passed (ctime cannot be set back, so wait it out)."""
    time.sleep(delta.RACY_NS / 1e9 + 0.02)
    return delta.snapshot(_plan(tmp_path))


def test_unchanged_tree_resends_nothing(tmp_path):
    (tmp_path / "a").write_text("a")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b").write_text("b")
    snap = _settled(tmp_path)
    changed, removed = delta.changes(snap, _plan(tmp_path))
    assert changed.entries == [] and removed == []


def test_changed_created_and_removed(tmp_path):
    (tmp_path / "same").write_text("x")
    (tmp_path / "edit").write_text("1")
    (tmp_path / "gone").write_text("g")
    snap = _settled(tmp_path)
    (tmp_path / "edit").write_text("2")           # same size, same second
    (tmp_path / "gone").unlink()
    (tmp_path / "new").write_text("n")
    os.chmod(tmp_path / "same", 0o600)             # metadata only: ctime moves
    changed, removed = delta.changes(snap, _plan(tmp_path))
    assert _names(changed) == ["edit", "new", "same"]
    assert removed == ["/gone"]


def test_a_file_changed_just_before_the_snapshot_is_always_resent(tmp_path):
    (tmp_path / "hot").write_text("1")
    snap = delta.snapshot(_plan(tmp_path))         # within the racy window of the write
    changed, _ = delta.changes(snap, _plan(tmp_path))
    assert _names(changed) == ["hot"]


def test_a_hardlinked_name_changed_resends_the_whole_group(tmp_path):
    (tmp_path / "a").write_text("one")
    os.link(tmp_path / "a", tmp_path / "b")
    (tmp_path / "c").write_text("other")
    snap = _settled(tmp_path)
    with open(tmp_path / "b", "w") as f:
        f.write("two")
    changed, _ = delta.changes(snap, _plan(tmp_path))
    assert _names(changed) == ["a", "b"]
    kinds = {e.name: e.kind for e in changed.entries}
    assert kinds["b"] == b"1"                      # still a hardlink to a, which comes first
    assert changed.entries[0].name == "a"


def test_a_file_that_grew_while_phase_1_planned_it_is_resent(tmp_path):
    (tmp_path / "grow").write_text("12")
    time.sleep(delta.RACY_NS / 1e9 + 0.02)
    plan = _plan(tmp_path)
    with open(tmp_path / "grow", "a") as f:
        f.write("345")
    _old(tmp_path / "grow")
    time.sleep(delta.RACY_NS / 1e9 + 0.02)
    snap = delta.snapshot(plan)                    # sees 5 bytes where phase 1 announced 2
    changed, _ = delta.changes(snap, _plan(tmp_path))
    assert _names(changed) == ["grow"]
