"""What a runc-ckpt call is about to do to a container, written down before it hands the container to runc.

A checkpoint freezes the container before CRIU dumps it; a restore makes a
runc dir, mounts and CRIU tasks before runc records the container. If the
whole process tree is killed in between, what is left looks like something a
user did (a `pause`) or like nothing at all (no state.json). So right before
`runc checkpoint` / `runc restore` the call records its intent in the
container's state dir (`<state_dir>/<id>/.intent-<op>.json`: our pid and its
start time, the bundle, the runc root) and removes it once runc is done. An
intent whose process is gone marks the container's condition as ours to
repair (state/settle.py): thaw a frozen container, kill a half-restored
task, name the images that bring a stopped container back. A user's `pause`
has no intent beside it and is left alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator

from runc_ckpt.base.record import Record
from runc_ckpt.runtime import atomicfile, procscan

CHECKPOINT = "checkpoint"    # runc checkpoint runs (the container may be frozen)
RESTORE = "restore"          # runc restore runs (runc dir, criu-root, CRIU tasks)
STREAM = "stream"            # checkpoint --export - is sending (the images are its only copy until it ends)
SENT = "sent"                # a stream without a back channel was sent: whether the target restored is unknown
_PREFIX = ".intent-"


class Intent(Record):
    """One recorded intent; alive: whether the call that wrote it still runs."""

    op: str
    pid: int
    start: int | None
    bundle: str
    root: str
    since: float
    alive: bool


def _path(container_dir: str, op: str) -> str:
    return os.path.join(container_dir, f"{_PREFIX}{op}.json")


def begin(container_dir: str, op: str, bundle: str, root: str) -> None:
    """Record that this process is about to hand the container to runc for op."""
    os.makedirs(container_dir, mode=0o700, exist_ok=True)
    pid, start = procscan.identity()
    # Not durable (no fsyncs, ~1-3 ms): it tells the next call what a killed call left while the host runs (a
    # frozen container, runc's dir, CRIU's tasks); a host crash ends all of those with it.
    atomicfile.write_json(_path(container_dir, op), {"pid": pid, "start": start, "bundle": bundle,
                                                     "root": os.path.realpath(root), "since": time.time()},
                          mode=0o600, indent=None, durable=False)


def end(container_dir: str, op: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_path(container_dir, op))


@contextlib.contextmanager
def recorded(container_dir: str, op: str, bundle: str, root: str) -> Iterator[None]:
    """begin() for the block, end() after it, however it ends (a kill -9 leaves the record)."""
    begin(container_dir, op, bundle, root)
    try:
        yield
    finally:
        end(container_dir, op)


def read_all(container_dir: str) -> dict[str, Intent]:
    """Every recorded intent of the container, by op."""
    found: dict[str, Intent] = {}
    try:
        names = os.listdir(container_dir)
    except OSError:
        return found
    for name in names:
        if not (name.startswith(_PREFIX) and name.endswith(".json")):
            continue
        op = name[len(_PREFIX):-len(".json")]
        try:
            with open(os.path.join(container_dir, name), encoding="utf-8") as f:
                doc = json.load(f)
            pid, start = int(doc["pid"]), doc.get("start")
            found[op] = Intent(op, pid, start if isinstance(start, int) else None, str(doc.get("bundle") or ""),
                               str(doc.get("root") or ""), float(doc.get("since") or 0),
                               procscan.alive(pid, start if isinstance(start, int) else None))
        except (OSError, ValueError, KeyError, TypeError):
            found[op] = Intent(op, 0, None, "", "", 0.0, False)     # torn: its writer died
    return found


def orphaned(container_dir: str) -> dict[str, Intent]:
    """The intents whose call is gone: a killed run's, to repair."""
    return {op: i for op, i in read_all(container_dir).items() if not i.alive}
