"""A private tmpfs directory for memory dumps that are only passing through (migration's pre-copy).

`checkpoint --export - --pre-copy` dumps the container's memory while it
runs (P0), streams it and keeps only its page digests; at the freeze it
writes the incremental image P1' before sending it. Neither is ever the
container's only copy, so both belong in memory, not on the state dir's
disk: a directory in /dev/shm, created 0700 under a random name and held
with flock for as long as the call lives (atomicfile.locked_dir).

Its name carries the state dir (a hash of its real path) and the container
ID, so that any later call on the container (state/settle, under the
container's lock) finds what a killed call left -- its flock died with it --
and removes it: a `kill -9` of the whole tree leaves at most one dump in
memory until the next call on that container.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from runc_ckpt.base import namedigest
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.runtime import atomicfile, safe_remove

TMPFS = "/dev/shm"


def _prefix(state_dir: str, cid: str) -> str:
    tag = namedigest.hex_digest(os.path.realpath(state_dir), 12)
    return atomicfile.temp_prefix(f"memory-{tag}-{cid}")


@contextlib.contextmanager
def scratch(state_dir: str, cid: str) -> Iterator[str]:
    """A new private directory in TMPFS for cid's passing dumps; removed when the block ends, however."""
    try:
        fd, path = atomicfile.locked_dir(TMPFS, _prefix(state_dir, cid))
    except OSError as e:
        raise RuncCkptError(f"cannot make a memory dump directory in {TMPFS}: {e.strerror or e}") from None
    try:
        yield path
    finally:
        safe_remove.remove_tree(path, ignore_errors=True)
        os.close(fd)


def sweep(state_dir: str, cid: str) -> list[str]:
    """Remove what killed calls on cid left in TMPFS (a live call's flock keeps its own); one message each."""
    prefix = _prefix(state_dir, cid)
    return [f"removed {path}, a memory dump a killed migration left"
            for path in atomicfile.sweep(TMPFS, lambda name: name.startswith(prefix))]
