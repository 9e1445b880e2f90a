"""The --print-stats JSON of checkpoint, in podman's shape (all times in microseconds).

    {"checkpoint_duration": N, "podman_checkpoint_duration": N,
     "container_statistics": [{"Id": ..., "RawInput": ..., "runtime_checkpoint_duration": N,
                               "criu_statistics": {freezing_time, frozen_time, memdump_time,
                                                   memwrite_time, pages_scanned, pages_written}}]}

podman_checkpoint_duration repeats checkpoint_duration so tooling written
for podman's output reads ours unchanged. The CRIU numbers come from the
stats-dump image CRIU leaves in the work dir.
"""

from __future__ import annotations

import json
import os

from runc_ckpt.base.record import Record


class ContainerStats(Record):
    id: str
    raw_input: str
    runtime_us: int
    criu: dict[str, int]


def micros(seconds: float) -> int:
    return round(seconds * 1_000_000)


def read_criu_stats(work_dir: str) -> dict[str, int]:
    """podman's criu_statistics from <work_dir>/stats-dump (RuncCkptError if unreadable)."""
    # Imported here, not at the top: the stats-dump reader only --print-stats needs.
    from runc_ckpt.runtime.criu import stats
    decoded = stats.read(os.path.join(work_dir, "stats-dump"))
    return stats.podman_view(decoded.get("dump", {}), stats.PODMAN_DUMP_KEYS)


def render(total_seconds: float, containers: list[ContainerStats]) -> str:
    total = micros(total_seconds)
    doc = {
        "checkpoint_duration": total,
        "podman_checkpoint_duration": total,
        "container_statistics": [
            {"Id": c.id, "RawInput": c.raw_input, "runtime_checkpoint_duration": c.runtime_us,
             "criu_statistics": c.criu}
            for c in containers
        ],
    }
    return json.dumps(doc, indent=4) + "\n"
