"""restore --import's merge of a staged tree into its target, every change journaled first (state.transaction).

Apart from the journal itself because only an import merges: the journal's readers (the
recovery every checkpoint and restore runs first) need none of safeextract's tree code.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from runc_ckpt.archive import safeextract
from runc_ckpt.state.transaction import Journal


def apply_merge(journal: Journal, staging: safeextract.Root, target: safeextract.Root,
                plan: safeextract.MergePlan, explicit_dirs: dict[tuple[str, ...], safeextract.DirMeta],
                result: safeextract.Extracted, undo_dir: str, step: Callable[[], None] = lambda: None) -> None:
    """Apply a checked merge plan (safeextract.plan_merge), every change journaled first.

    Replaced and deleted entries go aside into undo_dir (same filesystem as
    target), not away; staged entries are renamed into place
    (safeextract.move, a copy only across filesystems); then the explicit
    directories get their metadata, deepest first. `step` is called between
    operations (fault injection).
    """
    old_umask = os.umask(0)
    try:
        journal.undo_dir(undo_dir)
        for parts in plan.replaces:
            target.trim()
            _aside(journal, target, parts, undo_dir)
        for parts in plan.moves + plan.replaces:
            staging.trim()
            target.trim()
            journal.moving(os.path.join(target.path, *parts))
            safeextract.move(staging, target, parts)
            step()
        for parts in plan.deletions:
            target.trim()
            _aside(journal, target, parts, undo_dir)
        for meta in sorted(explicit_dirs.values(), key=lambda m: -len(m.parts)):
            target.trim()
            if target.lstat(meta.parts) is not None:
                journal.meta(os.path.join(target.path, *meta.parts))
            safeextract.apply_dir_meta(target, meta, result)
    finally:
        os.umask(old_umask)


def _aside(journal: Journal, target: safeextract.Root, parts: tuple[str, ...], undo_dir: str) -> None:
    parent = target.dir(parts[:-1])
    if parent is None or target.lstat(parts) is None:
        return
    aside = journal.backing_up(os.path.join(target.path, *parts), undo_dir)
    target.forget(parts)
    os.rename(parts[-1], aside, src_dir_fd=parent)
