"""A call's private scratch dir in a container's state dir, flock-held while the call lives.

`checkpoint --export FILE --incremental-from PARENT` stages the parent chain
and builds P1' on disk beside the container's images (too big to assume
room in tmpfs, and never the container's only copy); `checkpoint --export -
--pre-copy` dumps phase 0's memory there while the page cache has room
(migrate.memory.dump_dir). The dir is made and held like
runtime/memscratch's tmpfs dirs (atomicfile.locked_dir), so a `kill -9` of
the call (or its whole tree) drops the flock with it, and the next call on
the container -- any call: state/settle sweeps every container it settles
-- removes the leftover while a live call's dir, whose flock is held, stays.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from runc_ckpt.runtime import atomicfile, safe_remove

PREFIX = ".scratch-"


def make(container_dir: str) -> tuple[int, str]:
    """A new 0700 scratch dir in container_dir (made if missing) and the fd holding its flock (the caller
    closes it)."""
    os.makedirs(container_dir, mode=0o700, exist_ok=True)
    return atomicfile.locked_dir(container_dir, PREFIX)


@contextlib.contextmanager
def scratch(container_dir: str) -> Iterator[str]:
    """make()'s dir for the length of a block; removed when the block ends, however."""
    fd, path = make(container_dir)
    try:
        yield path
    finally:
        safe_remove.remove_tree(path, ignore_errors=True)
        os.close(fd)


def sweep(container_dir: str) -> list[str]:
    """Remove the scratch dirs of killed calls on this container; one message each."""
    return [f"removed {path}, the scratch dir of a killed call"
            for path in atomicfile.sweep(container_dir, lambda name: name.startswith(PREFIX))]
