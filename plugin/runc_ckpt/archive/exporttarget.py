"""Can an --export archive be written at this path? Asked before any container is touched.

Apart from the export writer (archive.export) so that the checkpoint flow can
ask it before the dump without loading the writer, which is imported while
runc dumps (metadata.hostfacts): ~25 ms of a tiny checkpoint moved into the
time spent waiting on runc.
"""

from __future__ import annotations

import os

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.runtime import atomicfile

PROBE_PREFIX = ".runc-ckpt-probe-"   # check_target's probe file, removed at once


def check_target(path: str, probe: bool = True) -> str:
    """The absolute archive path, once we know it can be written there; leaves nothing behind.

    The one set of checks of an export target, run before any container is
    touched: a name, a directory that exists and takes a file (a probe file,
    created and removed; probe=False when that was done already), a name whose
    temp name (atomicfile) still fits the filesystem's limit.
    """
    if not path:
        raise RuncCkptError("--export needs a file name")
    target = os.path.abspath(path)
    directory = os.path.dirname(target)
    if os.path.isdir(target):
        raise RuncCkptError(f"--export {path}: is a directory")
    if not os.path.isdir(directory):
        raise RuncCkptError(f"--export {path}: directory {directory} does not exist")
    try:
        atomicfile.check_name(target)
    except ValueError as e:
        raise RuncCkptError(f"--export {path}: {e}") from None
    if not probe:
        return target
    try:
        fd, probe_file = atomicfile.new_file(directory, PROBE_PREFIX)
    except OSError as e:
        raise RuncCkptError(f"--export {path}: cannot write in {directory}: {e.strerror}") from None
    os.close(fd)
    os.unlink(probe_file)
    return target
