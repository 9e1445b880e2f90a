"""The stat pre-pass: walk a tree once and plan its tar entries (and, for an overlay, its deletions).

Two walks share one walker:
- plain (a volume's _data, a plain-directory rootfs): every entry;
- overlay upperdir: what the container changed. A whiteout (char device 0:0,
  or a file carrying the overlay.whiteout xattr) is a deleted path. An opaque
  directory (overlay.opaque = "y") replaced a lower directory: its upper
  content is archived and the lower entries it hides are listed as deleted.

Opaque directories, and why not podman's way: containers/storage lists the
opaque directory *itself* as deleted and archives its new content, but podman
restores by extracting the diff first and then removing every deleted path,
which would wipe the directory it just extracted. We list instead each lower
entry the opaque directory hides (recursing where both sides are
directories), which gives the right tree whether a restore deletes before or
after extracting; listing a path that does not exist is harmless there. When
the lower layers are unknown (relative lowerdir paths), we fall back to
podman's entry, the directory itself.

Entries keep numeric owners, modes with setuid/setgid/sticky, integer mtimes,
symlink targets, hardlinks within the tree (second and later names become
LNKTYPE entries) and xattrs except overlay's own. Regular-file data is read
later from the upperdir (or, for a metacopy-only upper file, from the merged
mount); sockets cannot be stored in tar and are left out.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable

from runc_ckpt.archive.writer import Entry, EntrySpool, TreePlan
from runc_ckpt.base.record import Record
from runc_ckpt.rootfs.diff import FULL, OVERLAY_DIFF, SKIP, RootfsSource

_OVERLAY_XATTRS = ("trusted.overlay.", "user.overlay.")


def _is_overlay_xattr(name: str) -> bool:
    return name.startswith(_OVERLAY_XATTRS)


def xattr_names(path: str) -> list[str]:
    try:
        return os.listxattr(path, follow_symlinks=False)
    except OSError:        # ENOTSUP on filesystems without xattrs; a vanished file
        return []


def overlay_flag(path: str, names: Iterable[str], key: str) -> bytes | None:
    """Value of trusted.overlay.<key> or user.overlay.<key>, if set."""
    for prefix in _OVERLAY_XATTRS:
        if prefix + key in names:
            try:
                return os.getxattr(path, prefix + key, follow_symlinks=False)
            except OSError:
                return None
    return None


def _xattrs(path: str, names: list[str]) -> dict[str, bytes] | None:
    out = {}
    for name in names:
        if _is_overlay_xattr(name):
            continue
        try:
            out[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
    return out or None


def hidden_lower(lowers: list[str] | None, skip: frozenset[str], name: str, upper_dir: str) -> list[str]:
    """Container paths of the lower entries an opaque upper directory `name` hides (lowers top first;
    empty or None: unknown, and the directory itself is listed, podman's way)."""
    if not lowers:
        return ["/" + name]
    lower: dict[str, bool] = {}
    for layer in lowers:
        try:
            with os.scandir(os.path.join(layer, name)) as it:
                for de in it:
                    lower.setdefault(de.name, de.is_dir(follow_symlinks=False))
        except (FileNotFoundError, NotADirectoryError):
            continue
    try:
        with os.scandir(upper_dir) as it:
            upper = {de.name: de.is_dir(follow_symlinks=False) for de in it}
    except (FileNotFoundError, NotADirectoryError):
        upper = {}
    out = []
    for child in sorted(lower):
        rel = f"{name}/{child}"
        if rel in skip:
            continue
        if child not in upper:
            out.append("/" + rel)
        elif lower[child] and upper[child]:
            out.extend(hidden_lower(lowers, skip, rel, os.path.join(upper_dir, child)))
    return out


class Scanner:
    """Walks a tree, appending Entry objects to `entries` and container paths to `deleted`.

    `entries` is an EntrySpool: memory stays flat however many files the
    tree has (its temp file, if any, goes to spool_dir; None: $TMPDIR).
    """

    def __init__(self, skip: frozenset[str] = frozenset(), lowers: list[str] | None = None,
                 merged: str | None = None, spool_dir: str | None = None) -> None:
        self.skip = skip
        self.lowers = lowers          # overlay lower dirs, top first; empty/None: unknown
        self.merged = merged          # the merged mount, for metacopy files and redirected dirs
        self.entries = EntrySpool(spool_dir)
        self.root: str | None = None  # top of the first plain-prefix walk: where sourceless entries live
        self.deleted: list[str] = []
        self._links: dict[tuple[int, int], str] = {}

    def walk(self, top: str, prefix: str = "", overlay: bool = False) -> None:
        """Plan every entry under `top` (not `top` itself), named `prefix` + path relative to it.

        Breadth-first per directory: a directory's entry always precedes its
        children, which is all an extractor needs."""
        if self.root is None and not prefix:
            self.root = top
        derived = top == self.root and not prefix      # data path = root/name: no need to store it
        stack = [(top, prefix)]
        while stack:
            directory, rel = stack.pop()
            try:
                with os.scandir(directory) as it:
                    children = sorted(it, key=lambda d: d.name)
            except (FileNotFoundError, NotADirectoryError):
                continue                     # removed while we walk: nothing to archive
            subdirs = []
            for de in children:
                name = rel + de.name
                if name in self.skip:
                    continue
                path = de.path
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    continue
                names = xattr_names(path)
                if not names and st.st_nlink == 1 and stat.S_ISREG(st.st_mode):
                    # The common case, kept lean for trees of many small files.
                    self.entries.append(Entry.regular(name, None if derived else path, st))
                    continue
                sub = self._visit(path, name, st, names, overlay, derived)
                if sub is not None:
                    subdirs.append(sub)
            stack.extend(reversed(subdirs))

    def plan(self) -> TreePlan:
        return TreePlan(self.entries, self.root)

    def _visit(self, path: str, name: str, st: os.stat_result, names: list[str], overlay: bool,
               derived: bool) -> tuple[str, str] | None:
        """Plan one path (lstat result and xattr names given); return (dir, prefix) to walk into."""
        fmt = stat.S_IFMT(st.st_mode)
        overlay_marks = overlay and any(map(_is_overlay_xattr, names))
        whiteout = fmt == stat.S_IFCHR and st.st_rdev == 0 or (
            overlay_marks and fmt == stat.S_IFREG and overlay_flag(path, names, "whiteout") is not None)
        if overlay and whiteout:
            self.deleted.append("/" + name)
            return None
        if fmt == stat.S_IFSOCK:
            return None
        link = ""
        if fmt == stat.S_IFREG and st.st_nlink > 1:
            link = self._links.setdefault((st.st_dev, st.st_ino), name)
            link = "" if link == name else link
        try:
            entry = Entry.from_stat(name, path, st, _xattrs(path, names) if names else None, linkname=link)
        except FileNotFoundError:
            return None
        if derived:
            entry.source = None
        if overlay_marks and fmt == stat.S_IFREG and self.merged and \
                overlay_flag(path, names, "metacopy") is not None:
            # The upper file holds metadata only; its data is in a lower layer.
            entry.source, entry.ino = os.path.join(self.merged, name), 0
        self.entries.append(entry)    # complete now: the spool may write it out
        if fmt != stat.S_IFDIR:
            return None
        if overlay_marks:
            if self.merged and overlay_flag(path, names, "redirect") is not None:
                # A renamed lower directory: its content lives elsewhere in the
                # lower layers, so archive the whole merged view of it.
                self.walk(os.path.join(self.merged, name), name + "/")
                return None
            if overlay_flag(path, names, "opaque") == b"y":
                self.deleted.extend(hidden_lower(self.lowers, self.skip, name, path))
        return (path, name + "/")


class RootfsPlan(Record):
    kind: str                      # OVERLAY_DIFF | FULL
    tree: TreePlan
    deleted: list[str]             # container paths, e.g. "/etc/gone"
    root_mode: int                 # st_mode & 0o7777 of the container root


def plan_rootfs(source: RootfsSource, spool_dir: str | None = None) -> RootfsPlan:
    """Stat pre-pass over the container's changes: entries to archive (spooled to spool_dir) and paths deleted.

    For an overlay root the merged mount is needed only for metacopy files and
    redirected dirs; the scan reports it missing if the engine already
    unmounted it.
    """
    dirs = source.overlay
    if dirs is not None:
        scanner = Scanner(SKIP, lowers=dirs.lowers, merged=os.path.realpath(source.rootfs), spool_dir=spool_dir)
        scanner.walk(dirs.upper, overlay=True)
        kind = OVERLAY_DIFF
    else:
        scanner = Scanner(SKIP, spool_dir=spool_dir)
        scanner.walk(source.rootfs)
        kind = FULL
    return RootfsPlan(kind, scanner.plan(), sorted(scanner.deleted), source.root_mode)
