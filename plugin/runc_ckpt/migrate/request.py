"""What a live migration is asked to do: frozen, typed requests, built by the command layer.

`checkpoint --export -` is a MigrateSend (a checkpoint request plus the
stream's own flags); `restore --import -` is a MigrateReceive (an import
request plus the back channel). runc_ckpt.commands builds them from argv.
"""

from __future__ import annotations

from dataclasses import dataclass

from runc_ckpt.checkpoint.request import CheckpointRequest
from runc_ckpt.restore.request import ImportRequest


@dataclass(frozen=True)
class MigrateSend:
    """`checkpoint --export - [--pre-copy [--pre-copy-max-pause S]] [--handshake] [--stream-timeout S]`."""

    checkpoint: CheckpointRequest
    pre_copy: bool = False
    handshake: bool = False
    stream_timeout: float = 60.0        # seconds the receiver may read nothing; 0: no limit
    max_pause: float | None = None      # the phase-0 pause allowed (migrate.memory); None: any, 0: no memory pre-copy


@dataclass(frozen=True)
class MigrateReceive:
    """`restore --import - [--handshake]`."""

    restore: ImportRequest
    handshake: bool = False
