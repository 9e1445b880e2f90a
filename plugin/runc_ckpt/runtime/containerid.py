"""runc's container-ID rule, the one place we judge an ID.

runc 1.1.5 (libcontainer/factory_linux.go, validateID) accepts an ID when it
matches Go's `^[\\w+-\\.]+$` and "/"+id is already a clean path. Go's \\w is
ASCII only, and `+-\\.` is a range: `+ , - .`. The clean-path test refuses
exactly "." and "..", since no other matching ID contains a slash. We use the
ID in state-dir and archive names, so an ID runc would refuse never becomes a
path component of ours either.
"""

from __future__ import annotations

import os
import re

from runc_ckpt.base.errors import RuncCkptError

_ID = re.compile(r"[0-9A-Za-z_+,\-.]+", re.ASCII)


def is_valid(container_id: str) -> bool:
    """Whether runc 1.1.5 would accept container_id."""
    return _ID.fullmatch(container_id) is not None and container_id not in (".", "..")


def check(container_id: str) -> str:
    """container_id, or RuncCkptError in runc's words ("invalid container id", runc's ErrInvalidID)."""
    if not is_valid(container_id):
        raise RuncCkptError(f"invalid container id {container_id!r}")
    return container_id


def container_dir(state_dir: str, container_id: str) -> str:
    """The container's own dir in our state dir: its images, intent records and scratch."""
    return os.path.join(os.path.realpath(state_dir), container_id)
