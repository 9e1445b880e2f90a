"""`checkpoint --export FILE --incremental-from PARENT`: an archive holding only the pages changed since PARENT.

Periodic checkpoints of a long-running job, without the kernel's soft-dirty
tracking: runc dumps in full as always (the state dir's images follow the
usual rules), and the archive gets P1' (runtime.criu.incremental) in their
place, whose pagemaps point every page with the parent's content at the
same address into the parent, plus runc-ckpt.parent.json naming the parent
(archive.chain). The parent chain is read, verified, judged by the trust
policy and indexed before the dump, so a bad parent refuses the call before
the container is touched and the dump's pause does not grow; the build
runs after it, in a flock-ed scratch dir in the container's state dir that
the next call on the container sweeps if this one is killed (state/callscratch).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from runc_ckpt.archive import chain, layout
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.globalflags import GlobalFlags
from runc_ckpt.runtime import faults, safe_remove
from runc_ckpt.runtime.criu import PARENT_LINK, incremental
from runc_ckpt.state import callscratch
from runc_ckpt.trust import policy as trustpolicy

BUILT = "built"           # P1' inside the scratch dir


@dataclass
class Base:
    """The parent chain of one incremental export, staged and indexed; close() removes it."""

    scratch: str
    fd: int
    index: incremental.ParentIndex
    link: chain.Link

    def build(self, dump: str) -> tuple[str, incremental.Result]:
        """P1' from the full dump, without its `parent` link (the archive names its parent by link instead)."""
        out = os.path.join(self.scratch, BUILT)
        result = incremental.build_from_index(self.index, dump, out)
        os.unlink(os.path.join(out, PARENT_LINK))
        faults.point("incremental-built")
        return out, result

    def close(self) -> None:
        safe_remove.remove_tree(self.scratch, ignore_errors=True)
        os.close(self.fd)


def check_parent(parent: str, archive: str) -> None:
    """What can be told of the parent before any container is chosen: a file, and not the target."""
    if not os.path.isfile(parent):
        raise RuncCkptError(f"--incremental-from {parent}: no such archive file")
    if os.path.realpath(parent) == os.path.realpath(archive):
        raise RuncCkptError(f"--incremental-from {parent}: that is the --export target itself")


def prepare(parent: str, archive: str, container_dir: str, trust: trustpolicy.Policy,
            decryption_keys: tuple[str, ...], flags: GlobalFlags | None) -> Base:
    """Read, verify, judge and index the chain ending in `parent`, for a child written to `archive`."""
    parent = os.path.abspath(parent)
    fd, scratch = callscratch.make(container_dir)   # a killed call's: swept by state/settle, under the lock
    try:
        ancestors = chain.stage(parent, None, None, scratch, None, trust, decryption_keys, flags)
        faults.point("chain-staged")
        link = chain.link_to(parent, ancestors[0].staged, archive)
        index = incremental.index_parent(os.path.join(scratch, f"{chain.ANCESTOR_PREFIX}1", layout.CHECKPOINT_DIR))
    except BaseException as e:
        safe_remove.remove_tree(scratch, ignore_errors=True)
        os.close(fd)
        if isinstance(e, OSError):
            raise RuncCkptError(f"--incremental-from {parent}: {e.strerror or e}") from None
        if isinstance(e, RuncCkptError):
            raise RuncCkptError(f"--incremental-from: {e}", e.exit_code) from None
        raise
    return Base(scratch, fd, index, link)
