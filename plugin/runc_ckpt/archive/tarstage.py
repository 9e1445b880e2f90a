"""The rootfs diff's inner tar made by GNU tar, a pipe stage: a many-file tree's per-file work in C.

Why: our Python writer costs ~25 us per file (a stat pre-pass, then open,
read and header per file), `tar -c` a few; a tree of 300k small files took
2.3 x `tar | zstd`. So for an export to a file, GNU tar writes the
rootfs-diff.tar member and we only read its output from a pipe.

The catch is the outer tar: the member's header needs its size before its
first byte, which is known only when tar is done. So tar's output is hashed
(the manifest's per-member SHA-256) and compressed as it arrives by the
archive's own compressor, as a zstd frame of its own, and the header goes in
front of it afterwards (archive.export.Frames: into a slot reserved in the
archive file before tar's frame, filled by compression.frame_of_size; a
sealed archive routes the frame to an anonymous spool beside it, and copies
it after the header). zstd frames concatenate: every decoder reads the
frames in a row as one stream and passes over skippable ones. Compressing
while tar runs keeps the overlap `tar | zstd` has.

What tar must leave out, and what becomes deleted.files, one os.scandir walk
finds from the directory entries' types alone (no stat per file): overlay
whiteouts (char devices 0:0), the engine's paths (rootfs.diff.SKIP) and,
from each directory's xattrs, opaque directories (their hidden lower entries
are listed as deleted, archive.scan.hidden_lower). Trees this walk cannot
render as archive.scan would -- redirected directories, xattr whiteouts
(opaque "x"), a metacopy overlay -- get None, and the Python writer.

The format matches archive.writer's: POSIX ustar headers with numeric owners
and integer mtimes, PAX records only for xattrs (all but overlay's own), long
names and big numbers; hardlinks within the tree as links; sockets left out.
Files that change while tar reads them are handled by tar, as by our writer:
a shrunk file is padded with zeros, a grown one cut at its size, each with a
warning; a file removed or unreadable meanwhile is left out (a warning too,
--ignore-failed-read). tar's exit status 1 means just those; 2 fails the
export.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
from typing import BinaryIO

from runc_ckpt.archive.hashpipe import HashPipe
from runc_ckpt.archive.scan import hidden_lower, overlay_flag, xattr_names
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.record import Record
from runc_ckpt.rootfs.diff import FULL, OVERLAY_DIFF, SKIP, RootfsSource
from runc_ckpt.runtime import faults

CHUNK = 1 << 20
PIPE_DEPTH = 4            # pieces read (up to CHUNK each) queued for the hashing thread: a few MiB held at most
# Below this many entries the Python writer is as quick: tar's start costs ~2 ms, our writer ~20 us a file.
MIN_ENTRIES = 128
_F_SETPIPE_SZ = 1031      # fcntl: bigger pipe, fewer reads (Linux; pipe-max-size caps it, 1 MiB by default)
# 64 KiB records: tar's default 10 KiB means a write() per 20 blocks. The last record is padded with
# zeros, which any tar reader passes over after the end-of-archive blocks.
_BLOCKING = "128"
TAR_OPTIONS = (
    "--create", "--file=-", "--format=posix",
    # Plain ustar headers where they hold the entry, as archive.writer's: no atime/ctime records,
    # the mtime in whole seconds.
    "--pax-option=delete=atime,delete=ctime,delete=mtime",
    "--numeric-owner", "--xattrs", "--xattrs-exclude=trusted.overlay.*", "--xattrs-exclude=user.overlay.*",
    "--sort=name", f"--blocking-factor={_BLOCKING}", "--warning=no-file-ignored",
    # A file that cannot be read (removed since the walk, even a top-level one) is a warning, as in
    # archive.writer, not a failed export.
    "--ignore-failed-read",
    # Exclusions are exact paths from the top (-X: one a line), the names to archive NUL-separated (-T).
    "--anchored", "--no-wildcards", "--null", "--verbatim-files-from",
)


class Listing(Record):
    """What tar archives of a tree: its top-level names, the paths it leaves out; and the deletions."""

    top: str                  # the tree's root (an overlay's upper dir, or a plain root)
    kind: str                 # OVERLAY_DIFF | FULL
    root_mode: int            # st_mode & 0o7777 of the container root
    names: list[str]          # top-level entries to archive, sorted
    exclude: list[str]        # tree paths tar must not archive: whiteouts, SKIP paths below the top (_excludable)
    deleted: list[str]        # container paths, e.g. "/etc/gone", sorted
    walked: int               # entries walked


def tar_binary() -> str | None:
    """GNU tar, if this host has one (a missing tar keeps the Python writer: never worse)."""
    return shutil.which("tar")


def list_tree(source: RootfsSource) -> Listing | None:
    """The walk that decides what tar archives; None where only the Python writer renders the tree."""
    dirs = source.overlay
    if dirs is None:
        return _walk(source.rootfs, FULL, None, source.root_mode)
    if dirs.metacopy:
        return None
    return _walk(dirs.upper, OVERLAY_DIFF, dirs.lowers, source.root_mode)


def _walk(top: str, kind: str, lowers: list[str] | None, root_mode: int) -> Listing | None:
    overlay = kind == OVERLAY_DIFF
    names: list[str] = []
    exclude: list[str] = []
    deleted: list[str] = []
    stack = [(top, "")]
    count = 0
    while stack:
        directory, rel = stack.pop()
        try:
            with os.scandir(directory) as it:
                children = list(it)
        except (FileNotFoundError, NotADirectoryError):
            continue
        count += len(children)
        for de in children:
            name = rel + de.name
            if name in SKIP:
                if rel:
                    exclude.append(name)
                continue
            if de.is_dir(follow_symlinks=False):
                if overlay:
                    marks = xattr_names(de.path)
                    if marks and not _plain_dir(de.path, name, marks, lowers, deleted):
                        return None
                stack.append((de.path, name + "/"))
            elif overlay and not (de.is_file(follow_symlinks=False) or de.is_symlink()) and _whiteout(de.path):
                if not _excludable(name):
                    return None
                deleted.append("/" + name)
                exclude.append(name)
                continue
            if not rel:
                names.append(name)
    return Listing(top, kind, root_mode, sorted(names), exclude, sorted(deleted), count)


def _excludable(name: str) -> bool:
    """Whether tar's --exclude-from can name it: that file is read line by line (--null does not apply
    to it in tar 1.34) and trailing blanks are cut from each line."""
    return "\n" not in name and not name[-1].isspace()


def _whiteout(path: str) -> bool:
    """Whether a special file (neither file, directory nor symlink) is an overlay whiteout, char 0:0."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _plain_dir(path: str, name: str, marks: list[str], lowers: list[str] | None, deleted: list[str]) -> bool:
    """Note what an overlay directory's xattrs say (opaque: its hidden lower entries are deleted);
    False for the marks tar cannot render (a redirect, xattr whiteouts inside)."""
    if overlay_flag(path, marks, "redirect") is not None:
        return False
    opaque = overlay_flag(path, marks, "opaque")
    if opaque == b"x":
        return False
    if opaque == b"y":
        deleted.extend(hidden_lower(lowers, SKIP, name, path))
    return True


class Done(Record):
    """What tar wrote: the member's size and SHA-256, and tar's warnings (files changed while read)."""

    size: int
    sha256: str
    warnings: list[str]


def run(tar: str, listing: Listing, out: BinaryIO, scratch: str | None) -> Done:
    """Run tar over the listing; hash its output and write it to out (the archive's compressor: one
    compressor's buffers, ~50 MiB with two zstd workers, not two).

    tar's file lists and messages go to anonymous files in scratch (None: $TMPDIR)."""
    with tempfile.TemporaryFile(prefix="runc-ckpt-tarlist-", dir=scratch) as names, \
            tempfile.TemporaryFile(prefix="runc-ckpt-tarexcl-", dir=scratch) as exclude, \
            tempfile.TemporaryFile(prefix="runc-ckpt-tarerr-", dir=scratch) as errors:
        names.write(b"".join(os.fsencode(n) + b"\0" for n in listing.names))
        exclude.write(b"".join(os.fsencode(n) + b"\n" for n in listing.exclude))
        for f in (names, exclude):
            f.flush()
        argv = [tar, *TAR_OPTIONS, f"--exclude-from=/dev/fd/{exclude.fileno()}", "--directory", listing.top,
                f"--files-from=/dev/fd/{names.fileno()}"]
        size, sha = _pump(argv, (names.fileno(), exclude.fileno()), errors, out)
        errors.seek(0)
        return Done(size, sha, [line for line in errors.read().decode(errors="replace").splitlines() if line.strip()])


def _pump(argv: list[str], fds: tuple[int, int], errors: BinaryIO, out: BinaryIO) -> tuple[int, str]:
    """tar's stdout into the hash and `out`; (bytes, sha256 hex) once tar succeeded."""
    env = {**os.environ, "LC_ALL": "C"}     # messages in one language: they become our warnings
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors,
                            pass_fds=fds, env=env)
    try:
        assert proc.stdout is not None
        pipe = proc.stdout.fileno()
        with contextlib.suppress(OSError):
            fcntl.fcntl(pipe, _F_SETPIPE_SZ, CHUNK)
        faults.point("export-tar")
        sha = hashlib.sha256()
        size = 0
        # The hash in a thread (archive.hashpipe): inline, it held the reading thread ~0.6 s a GiB, and the
        # 1 GiB + 20k export took 1.3 x `tar | zstd` instead of ~1.0. Each piece is new bytes: the thread
        # hashes it after we move on.
        hasher = HashPipe(PIPE_DEPTH)
        try:
            while piece := os.read(pipe, CHUNK):
                hasher.update(sha, [memoryview(piece)])
                out.write(piece)
                size += len(piece)
            digest = hasher.digest(sha)
        finally:
            hasher.close()
        rc = proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    if rc not in (0, 1):      # 1: some files changed while read (see the module docstring)
        errors.seek(0)
        lines = errors.read().decode(errors="replace").strip().splitlines()
        why = lines[-1] if lines else f"exit status {rc}"
        raise RuncCkptError(f"archiving the rootfs diff with {argv[0]} failed: {why}")
    return size, digest
