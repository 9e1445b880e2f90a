"""restore --import as a transaction: every change to the bundle is journaled and can be undone.

The import dir (`<bundle>/.runc-ckpt-import-*`, flock-ed for its lifetime
and inherited by runc restore) holds a journal: one JSON line per step,
written BEFORE the step is made, so that undo() -- in this process after a
failure or signal, or in the next call after a kill -9 -- can put back
exactly what was changed and nothing else:

  created   a path we created (a volume dir, a per-container bind file)
  move      a staged entry renamed into a target where nothing was
  backup    a target entry renamed aside (replaced or listed in
            deleted.files) into an undo dir on the same filesystem
  meta      a directory's old mode/owner/mtime before we changed them
  file      config.json before we rewrote it (copied into the import dir)
  target    a directory the archive is staged into (rootfs, volume): a
            killed run's staging and undo dirs there are swept at the end
  undodir   an undo dir we made (removed once undone or committed)
  runc      runc restore started for (root, id): from here a crash may
            have left a running container, so recovery asks runc first

commit() drops the undo data once runc restored the container; undo()
rolls back in reverse order. Journal lines are not fsynced: the journal
survives the death of runc-ckpt (the page cache outlives a process), not a
power cut in the middle of a restore.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
from collections.abc import Iterable

from runc_ckpt.archive import layout
from runc_ckpt.base.record import Record
from runc_ckpt.runtime import atomicfile, safe_remove

JOURNAL = "journal"
ORIGINALS = "originals"       # copies of files we rewrite (config.json), inside the import dir
UNDO_SUFFIX = ".undo"


class Step(Record):
    op: str
    path: str = ""            # absolute: the target entry (or created path)
    aside: str = ""           # absolute: where a backup or original copy is
    meta: tuple[int, int, int, int] | None = None  # mode, uid, gid, mtime_ns
    root: str = ""            # runc root (op "runc")
    cid: str = ""

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in self._asdict().items() if v not in ("", None)})

    @classmethod
    def from_json(cls, line: str) -> Step:
        d = json.loads(line)
        if d.get("meta") is not None:
            d["meta"] = tuple(d["meta"])
        return cls(**d)


class Journal:
    """The steps of one restore, appended to <import_dir>/journal as they are taken."""

    def __init__(self, import_dir: str) -> None:
        self.import_dir = import_dir
        self.path = os.path.join(import_dir, JOURNAL)
        self.steps: list[Step] = []
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self._seq = 0
        self._locks: list[int] = []    # flock-ed undo dirs outside the import dir

    def close(self) -> None:
        for fd in self._locks:
            os.close(fd)
        self._locks = []
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def undo_dir(self, path: str) -> str:
        """Create (once) an undo dir, flock-ed while we live so no sweep takes it."""
        if not os.path.isdir(path):
            self.add(Step("undodir", path))
            os.mkdir(path, 0o700)
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._locks.append(fd)
        return path

    def add(self, step: Step) -> None:
        self.steps.append(step)
        os.write(self._fd, (step.to_json() + "\n").encode())

    # ---- the steps a restore takes

    def created(self, path: str) -> None:
        self.add(Step("created", path))

    def moving(self, target: str) -> None:
        self.add(Step("move", target))

    def backing_up(self, target: str, undo_dir: str) -> str:
        self._seq += 1
        aside = os.path.join(undo_dir, str(self._seq))
        self.add(Step("backup", target, aside))
        return aside

    def meta(self, path: str) -> None:
        st = os.lstat(path)
        self.add(Step("meta", path, meta=(stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns)))

    def rewriting(self, path: str) -> None:
        """Keep a copy of path (if it exists) before it is replaced."""
        aside = ""
        if os.path.lexists(path):
            os.makedirs(os.path.join(self.import_dir, ORIGINALS), mode=0o700, exist_ok=True)
            aside = os.path.join(self.import_dir, ORIGINALS, os.path.basename(path))
            import shutil  # here, not at the top: a checkpoint loads this module (~2 ms before runc's fork)
            shutil.copy2(path, aside, follow_symlinks=False)
        self.add(Step("file", path, aside))

    def target(self, directory: str) -> None:
        self.add(Step("target", directory))

    def runc_started(self, root: str, cid: str) -> None:
        self.add(Step("runc", root=root, cid=cid))


def read(import_dir: str) -> list[Step]:
    """The journal a (dead) restore left; a torn last line is ignored."""
    steps = []
    try:
        with open(os.path.join(import_dir, JOURNAL), encoding="utf-8") as f:
            for line in f:
                with contextlib.suppress(ValueError, TypeError):
                    steps.append(Step.from_json(line))
    except OSError:
        pass
    return steps


def runc_step(steps: Iterable[Step]) -> Step | None:
    return next((s for s in steps if s.op == "runc"), None)


def _remove(path: str) -> None:
    """Remove an entry we put there; never follows a link (a directory goes as a tree)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        safe_remove.remove_tree(path, ignore_errors=True)
    else:
        os.unlink(path)


def undo(steps: list[Step]) -> list[str]:
    """Put back what the steps changed, newest first; returns problems (empty: all undone)."""
    problems = []
    backed = {s.path for s in steps if s.op == "backup"}
    for s in reversed(steps):
        try:
            if s.op == "created":
                _remove(s.path)
            elif s.op == "move":
                if s.path not in backed:     # a replaced entry is put back by its backup step
                    _remove(s.path)
            elif s.op == "backup":
                if os.path.lexists(s.aside):
                    _remove(s.path)
                    os.rename(s.aside, s.path)
            elif s.op == "meta" and s.meta is not None and os.path.isdir(s.path) \
                    and not os.path.islink(s.path):
                mode, uid, gid, mtime = s.meta
                os.chown(s.path, uid, gid, follow_symlinks=False)
                os.chmod(s.path, mode)
                os.utime(s.path, ns=(mtime, mtime), follow_symlinks=False)
            elif s.op == "target":
                sweep_staging(s.path)
            elif s.op == "undodir":          # its backups are back in place by now (they came later)
                safe_remove.remove_tree(s.path, ignore_errors=True)
            elif s.op == "file":
                if s.aside and os.path.lexists(s.aside):
                    with open(s.aside, "rb") as f:
                        atomicfile.write_bytes(s.path, f.read(), stat.S_IMODE(os.lstat(s.aside).st_mode))
                elif not s.aside:
                    _remove(s.path)
        except OSError as e:
            problems.append(f"{s.op} {s.path}: {e.strerror or e}")
    return problems


def undo_dirs(steps: Iterable[Step]) -> set[str]:
    """The undo dirs the backup steps used (outside the import dir when a target is another filesystem)."""
    return {os.path.dirname(s.aside) for s in steps if s.op == "backup"} | \
        {s.path for s in steps if s.op == "undodir"}


def commit(steps: list[Step]) -> None:
    """runc restored the container: the undo data is garbage now."""
    for d in undo_dirs(steps):
        safe_remove.remove_tree(d, ignore_errors=True)
    for s in steps:
        if s.op == "target":
            sweep_staging(s.path)


def sweep_staging(directory: str) -> list[str]:
    """Remove staging and undo dirs in directory that no live restore holds; returns them."""
    return atomicfile.sweep(directory, lambda name: name.startswith(layout.ROOTFS_STAGING_PREFIX))
