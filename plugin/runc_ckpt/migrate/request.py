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
    """`checkpoint --export - [--pre-copy] [--handshake] [--stream-timeout S]`."""

    checkpoint: CheckpointRequest
    pre_copy: bool = False
    handshake: bool = False
    stream_timeout: float = 60.0        # seconds the receiver may read nothing; 0: no limit


@dataclass(frozen=True)
class MigrateReceive:
    """`restore --import - [--handshake]`."""

    restore: ImportRequest
    handshake: bool = False
