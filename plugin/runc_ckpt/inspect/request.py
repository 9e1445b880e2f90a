"""What `runc-ckpt inspect` is asked to do: a frozen, typed request built by the command layer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Format = Literal["text", "json"]


@dataclass(frozen=True)
class InspectRequest:
    """`inspect [--format text|json] [--log] ARCHIVE|IMAGE`."""

    target: str
    format: Format = "text"
    log: bool = False
    decryption_keys: tuple[str, ...] = ()  # private keys for an encrypted archive (flags, then config)
    signature_policy: str | None = None    # --signature-policy (else as restore)
