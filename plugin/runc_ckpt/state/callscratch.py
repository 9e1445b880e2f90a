"""A call's private scratch dir in a container's state dir, flock-held while the call lives.

`checkpoint --export FILE --incremental-from PARENT` stages the parent chain
and builds P1' on disk beside the container's images (too big to assume
room in tmpfs, and never the container's only copy). The dir is made and
held like runtime/memscratch's tmpfs dirs (atomicfile.locked_dir), so a
`kill -9` of the call (or its whole tree) drops the flock with it, and the
next call on the container -- any call: state/settle sweeps every
container it settles -- removes the leftover while a live call's dir,
whose flock is held, stays.
"""

from __future__ import annotations

from runc_ckpt.runtime import atomicfile

PREFIX = ".incremental-"


def make(container_dir: str) -> tuple[int, str]:
    """A new 0700 scratch dir in container_dir and the fd holding its flock (the caller closes it)."""
    return atomicfile.locked_dir(container_dir, PREFIX)


def sweep(container_dir: str) -> list[str]:
    """Remove the scratch dirs of killed calls on this container; one message each."""
    return [f"removed {path}, the scratch dir of a killed checkpoint --incremental-from"
            for path in atomicfile.sweep(container_dir, lambda name: name.startswith(PREFIX))]
