"""Auto-export bookkeeping: where the next archive of a container goes, and retention.

When policy sets export_dir (settings.policy.Policy.auto_exports), every checkpoint of the container also writes an
archive there (export.write_archive places it atomically). Names are
`<container-id>-<UTC timestamp>.tar[.zst|.gz]`: the fixed-width timestamp makes
them sort by time, and the strict pattern lets prune() touch only files
that are certainly ours and certainly this container's.
"""

from __future__ import annotations

import os
import re
import stat
from datetime import UTC, datetime, timedelta

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.runtime import containerid

EXTENSIONS = {"zstd": ".tar.zst", "gzip": ".tar.gz", "none": ".tar"}
_STAMP = "%Y%m%dT%H%M%S.%fZ"
_STAMP_RE = r"[0-9]{8}T[0-9]{6}\.[0-9]{6}Z"
_EXT_RE = r"\.tar(?:\.zst|\.gz)?"
# runc's own rule for container IDs.


def prepare(export_dir: str) -> None:
    """Create export_dir (mode 0700: archives hold process memory) if it does not exist."""
    try:
        os.makedirs(export_dir, mode=0o700, exist_ok=True)
    except OSError as e:
        raise RuncCkptError(f"export dir {export_dir}: {e.strerror}") from None
    if not os.path.isdir(export_dir):
        raise RuncCkptError(f"export dir {export_dir}: not a directory")


def archive_path(export_dir: str, container_id: str, now: datetime | float,
                 compress: str = "zstd") -> str:
    """A new, unused archive path for container_id in export_dir, named for `now` in UTC."""
    _check_id(container_id)
    if compress not in EXTENSIONS:
        raise RuncCkptError(f"unknown compression {compress!r}: choose one of {', '.join(EXTENSIONS)}")
    when = datetime.fromtimestamp(now, UTC) if isinstance(now, (int, float)) else now.astimezone(UTC)
    # A stamp is taken if any archive of this container has it, whatever its
    # compression, so that stamps alone order the archives.
    taken = {_stamp_of(n).split("Z", 1)[0] for n in _names(export_dir, container_id)}
    while True:
        stamp = when.strftime(_STAMP)
        name = f"{container_id}-{stamp}{EXTENSIONS[compress]}"
        # Two checkpoints in one microsecond: take the next one rather than
        # overwrite an archive.
        if stamp[:-1] not in taken and not os.path.lexists(os.path.join(export_dir, name)):
            return os.path.join(export_dir, name)
        when += timedelta(microseconds=1)


def archives(export_dir: str, container_id: str) -> list[str]:
    """This container's archives in export_dir, oldest first (regular files only)."""
    _check_id(container_id)
    out = []
    for name in sorted(_names(export_dir, container_id), key=_stamp_of):
        path = os.path.join(export_dir, name)
        try:
            if stat.S_ISREG(os.lstat(path).st_mode):
                out.append(path)
        except FileNotFoundError:
            continue
    return out


def prune(export_dir: str, container_id: str, keep: int) -> list[str]:
    """Remove this container's oldest archives beyond the newest `keep`; 0 keeps all.

    Only regular files matching our naming for this exact container ID are
    considered, so nothing else in the directory is ever removed. Returns the
    paths removed. A failure is a RuncCkptError: the caller reports it as a
    warning, since the checkpoint itself succeeded.
    """
    if keep <= 0:
        return []
    removed = []
    for path in archives(export_dir, container_id)[:-keep]:
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise RuncCkptError(f"retention: cannot remove {path}: {e.strerror}") from None
        removed.append(path)
    return removed


def _check_id(container_id: str) -> None:
    if not containerid.is_valid(container_id):
        raise RuncCkptError(f"invalid container id {container_id!r} for an archive name")


def _names(export_dir: str, container_id: str) -> list[str]:
    pattern = re.compile(re.escape(container_id) + "-" + _STAMP_RE + _EXT_RE + r"\Z")
    try:
        entries = os.listdir(export_dir)
    except FileNotFoundError:
        return []
    except OSError as e:
        raise RuncCkptError(f"export dir {export_dir}: {e.strerror}") from None
    return [n for n in entries if pattern.match(n)]


def _stamp_of(name: str) -> str:
    """The time stamp and extension of an archive name _names() matched."""
    found = re.search(_STAMP_RE + _EXT_RE + r"\Z", name)
    assert found is not None, name
    return found.group(0)
