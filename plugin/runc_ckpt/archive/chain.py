"""Chains of incremental archives: the member that names an archive's parent, and how a chain is followed.

`checkpoint --export FILE --incremental-from PARENT` stores only the memory
pages that changed since PARENT (runtime.criu.incremental); its CRIU images
mark the others as lying in the parent image, as a dump on top of a
pre-dump does. Such an archive restores only together with its parent, so
it names it in `runc-ckpt.parent.json` (layout.PARENT, listed in the
manifest, so a signature covers it): the parent's file name relative to
the child's directory (archives of a chain move together), the SHA-256 of
the parent's manifest (which holds every member's SHA-256, so this one pin
covers the whole parent) and the child's depth (1: its parent is a full
checkpoint).

Every parent is untrusted input like the archive itself: it is looked up
by the recorded name (or in a directory the caller names), read and
verified against its own manifest, judged by the trust policy as
`--import-previous` is, and its manifest's digest must be the pin before
anything of it is used. Each parent's depth must be one less than its
child's, and a depth is at most MAX_DEPTH: so a chain ends within MAX_DEPTH
links and cannot loop (names that lead back to an archive of the chain meet
a depth or a pin that does not fit). CRIU follows a chain through `parent`
links between image dirs; stage() lays the ancestors' images out so
(relative links).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator

from runc_ckpt.archive import layout, reader
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.globalflags import GlobalFlags
from runc_ckpt.base.record import Record
from runc_ckpt.runtime.criu import PARENT_LINK
from runc_ckpt.trust import policy as trustpolicy
from runc_ckpt.trust import verdict

MAX_DEPTH = 32          # links from a child down to its full checkpoint: restore reads every one of them
MAX_NAME = 4096
ANCESTOR_PREFIX = "parent-"   # parent-<n>/ in a staging dir: the n-th ancestor's members
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ChainError(RuncCkptError):
    """A parent that cannot be used; status says how inspect shows it (missing, mismatch, too-deep, bad)."""

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        self.status = status


class Link(Record):
    """What an incremental archive records of its parent."""

    archive: str            # the parent's file name, relative to the child's directory
    manifest_sha256: str    # of the parent's manifest member, as stored
    depth: int              # of the child: 1 when the parent is a full checkpoint

    def to_json(self) -> bytes:
        return json.dumps({"archive": self.archive, "manifest_sha256": self.manifest_sha256,
                           "depth": self.depth}).encode()


def parse(staged: reader.Staged) -> Link | None:
    """The parent a staged, verified archive names; None: it is a full checkpoint."""
    raw = staged.parent_raw
    if raw is None:
        return None
    where = f"archive {staged.path}: {layout.PARENT}"
    if staged.manifest is None:
        raise ChainError(f"{where}: an archive naming a parent must carry a manifest", "bad")
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ChainError(f"{where} is not valid JSON: {e}", "bad") from None
    name = doc.get("archive") if isinstance(doc, dict) else None
    digest = doc.get("manifest_sha256") if isinstance(doc, dict) else None
    depth = doc.get("depth") if isinstance(doc, dict) else None
    if not isinstance(name, str) or not name or len(name) > MAX_NAME or "\0" in name or os.path.isabs(name) \
            or os.path.basename(name) in ("", ".", ".."):
        raise ChainError(f"{where}: archive {name!r} is not a file name relative to the child", "bad")
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
        raise ChainError(f"{where}: manifest_sha256 {digest!r} is not a SHA-256", "bad")
    if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= MAX_DEPTH:
        raise ChainError(f"{where}: depth {depth!r} is not 1..{MAX_DEPTH}", "too-deep")
    return Link(name, digest, depth)


def manifest_digest(staged: reader.Staged) -> str:
    """The digest a child pins its parent by; the parent must carry our manifest."""
    if staged.manifest_raw is None:
        raise ChainError(f"archive {staged.path} has no {layout.MANIFEST}: an incremental checkpoint can only "
                         f"build on an archive whose content a digest pins (runc-ckpt's own)", "bad")
    return hashlib.sha256(staged.manifest_raw).hexdigest()


def link_to(parent_path: str, parent: reader.Staged, child_path: str) -> Link:
    """The record of a new child at child_path on top of the staged, verified parent."""
    below = parse(parent)
    depth = (below.depth if below else 0) + 1
    if depth > MAX_DEPTH:
        raise ChainError(f"archive {parent_path} ends a chain of {depth - 1} incremental checkpoints, the most a "
                         f"chain may hold is {MAX_DEPTH}: export a full checkpoint to start a new one", "too-deep")
    name = os.path.relpath(os.path.abspath(parent_path), os.path.dirname(os.path.abspath(child_path)))
    return Link(name, manifest_digest(parent), depth)


def locate(link: Link, child_path: str, search_dir: str | None) -> str:
    """Where the parent is: by its recorded name beside the child, or by its file name in search_dir."""
    if search_dir is not None:
        return os.path.join(os.path.abspath(search_dir), os.path.basename(link.archive))
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(child_path)), link.archive))


class Ancestor(Record):
    """One parent of a chain, read and checked; link is how its child named it (None: the caller named it)."""

    path: str
    staged: reader.Staged
    link: Link | None
    depth: int              # links from it down to its full checkpoint (0: it is one)


Read = Callable[[str, int], reader.Staged]    # (path, n-th ancestor) -> the archive read and verified


def walk(first: str, link: Link | None, search_dir: str | None, read: Read) -> Iterator[Ancestor]:
    """Each ancestor from `first` (named by `link`, None: given by the caller) down to a full checkpoint."""
    path, n = first, 0
    while True:         # ends: depths fall by one a link from at most MAX_DEPTH (module docstring)
        n += 1
        if not os.path.isfile(path):
            named = f", named by {link.archive!r}" if link else ""
            raise ChainError(f"parent archive {path}{named} is missing"
                             + (" (--incremental-dir names where the chain lies)" if link else ""), "missing")
        staged = read(path, n)
        digest = manifest_digest(staged)
        if link is not None and digest != link.manifest_sha256:
            raise ChainError(f"parent archive {path} is not the one its child was made on: its manifest's SHA-256 "
                             f"is {digest}, the child recorded {link.manifest_sha256}", "mismatch")
        below = parse(staged)
        depth = below.depth if below else 0
        if link is not None and depth != link.depth - 1:
            raise ChainError(f"parent archive {path} is at depth {depth} of its chain, its child at "
                             f"{link.depth}", "mismatch")
        yield Ancestor(path, staged, link, depth)
        if below is None:
            return
        path, link = locate(below, path, search_dir), below


def judge(trust: trustpolicy.Policy, path: str, staged: reader.Staged) -> None:
    """A parent's pages are restored too: the policy judges it as it judges the archive (--import-previous)."""
    verdict.enforce(verdict.decide(trust, "archive", path, staged.manifest_raw, staged.manifest_sig,
                                   f"archive {path}"))


def stage(first: str, link: Link | None, search_dir: str | None, into: str, images: str | None,
          trust: trustpolicy.Policy, decryption_keys: tuple[str, ...], flags: GlobalFlags | None
          ) -> list[Ancestor]:
    """Stage each ancestor's members in into/parent-<n>/ and link `images` (a checkpoint dir; None: none
    yet) and each ancestor's checkpoint/ to the next one's, as CRIU reads a chain. The caller removes `into`."""
    def read(path: str, n: int) -> reader.Staged:
        directory = os.path.join(into, f"{ANCESTOR_PREFIX}{n}")
        os.mkdir(directory, 0o700)
        staged = reader.stage(path, reader.Targets(directory, None, None), flags=flags,
                              decryption_keys=decryption_keys)
        staged.verify()
        judge(trust, path, staged)
        return staged

    chain: list[Ancestor] = []
    for ancestor in walk(first, link, search_dir, read):
        directory = os.path.join(into, f"{ANCESTOR_PREFIX}{len(chain) + 1}", layout.CHECKPOINT_DIR)
        if ancestor.depth and os.path.lexists(os.path.join(directory, PARENT_LINK)):
            raise ChainError(f"parent archive {ancestor.path} holds a pre-checkpoint and names a parent: "
                             f"its images cannot build on both", "bad")
        if images is not None:
            os.symlink(os.path.relpath(directory, images), os.path.join(images, PARENT_LINK))
        images = directory
        chain.append(ancestor)
    return chain
