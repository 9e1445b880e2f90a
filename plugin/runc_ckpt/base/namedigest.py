"""A short hex SHA-256 of a short string, for the names of our files (lock files, scratch dirs).

hashlib loads OpenSSL on import: ~2.5 ms of a tiny checkpoint's start-up, which
names its lock before runc is forked. CPython's own SHA-256, the module hashlib
itself falls back to without OpenSSL (_sha256 in 3.11, _sha2 later), gives the
same digest for these few bytes without it. Bulk hashing (archives, images)
stays with hashlib, whose OpenSSL code is the fast one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

TYPE_CHECKING = False  # typing's flag, without importing typing (base/record.py says why)
if TYPE_CHECKING:
    from typing import Any


def _builtin_sha256() -> Callable[[bytes], Any]:
    for name in ("_sha256", "_sha2"):
        try:
            return importlib.import_module(name).sha256     # type: ignore[no-any-return]
        except (ImportError, AttributeError):
            continue
    import hashlib  # a Python built without them: hashlib's (the same digest)
    return hashlib.sha256


_SHA256 = _builtin_sha256()


def hex_digest(text: str, length: int) -> str:
    """The first `length` hex digits of SHA-256(text, UTF-8)."""
    return str(_SHA256(text.encode()).hexdigest())[:length]
