"""Pre-copy: which entries of a tree changed between phase 1 and the freeze.

Phase 1 streams a tree (the rootfs diff, a volume) while the container runs.
snapshot() records, per planned entry, the lstat the decision rests on:
inode, size, mode, owner, mtime and ctime in nanoseconds. After the freeze
the tree is planned again and changes() keeps only what differs: new
entries, entries whose stat differs, and the paths that are gone.

Why ctime: a write or chmod always moves it and utime() cannot set it back.
Two safeguards against timestamps that are coarse (a jiffy, up to 10 ms):
an entry whose ctime is within RACY_NS of the snapshot's start may be
changed again without its ctime moving, so it is always resent ("racy git");
and a file whose size at the snapshot differs from the size phase 1
announced was sent truncated or padded, so it is resent too. A stat that
fails counts as changed. Hardlinked names travel as a group: if one name
is resent, so are the file and all its other names, because in the staging
dir they share one inode.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from runc_ckpt.archive.writer import LNK, REG, Entry, TreePlan

RACY_NS = 50_000_000  # 5 jiffies at HZ=100: coarse timestamps lag the clock by at most one


Key = tuple[int, int, int, int, int, int, int]


def _path(tree: TreePlan, e: Entry) -> str:
    return e.source or f"{tree.root or ''}/{e.name.rstrip('/')}"


def _key(path: str) -> Key | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, st.st_ctime_ns)


@dataclass
class Snapshot:
    """Per entry name: the stat phase 1 relied on, or None where phase 1's copy cannot be trusted."""

    taken_ns: int
    keys: dict[str, Key | None]


def snapshot(tree: TreePlan) -> Snapshot:
    """Taken right after planning and before any data is read: later writes then show as changes."""
    taken = time.time_ns()
    keys: dict[str, Key | None] = {}
    for e in tree.entries:
        k = _key(_path(tree, e))
        if k is not None and (k[6] >= taken - RACY_NS or (e.kind == REG and k[1] != e.size)):
            k = None
        keys[e.name.rstrip("/")] = k
    return Snapshot(taken, keys)


def changes(before: Snapshot, tree: TreePlan) -> tuple[TreePlan, list[str]]:
    """(the entries to resend, as a tree plan, and the container paths gone) since `before`."""
    names = {e.name.rstrip("/") for e in tree.entries}
    removed = sorted("/" + n for n in before.keys if n not in names)
    changed: set[str] = set()
    for e in tree.entries:
        name = e.name.rstrip("/")
        old = before.keys.get(name)
        if old is None or old != _key(_path(tree, e)):
            changed.add(name)
    # Hardlink groups: the file (first name) and every other name go together.
    group_of = {e.name: e.linkname for e in tree.entries if e.kind == LNK}
    dirty_groups = {group_of.get(n, n) for n in changed if n in group_of} | \
        {n for n in changed if n in set(group_of.values())}
    if dirty_groups:
        changed |= dirty_groups | {n for n, head in group_of.items() if head in dirty_groups}
    entries = [e for e in tree.entries if e.name.rstrip("/") in changed]
    return TreePlan(entries, tree.root), removed
