"""Where runc-ckpt.yaml is, and its `runc:` key read without YAML, for the pass-through path.

Finding the real runc must not cost a YAML parser and a schema validator on
every pass-through call, so a plain `runc: /abs/path` line is read here, by
the same rule as the sh front end (plugin/bin/runc-ckpt). Any other spelling
of the key, and every other key, is left to settings.config, which validates
the whole file.
"""

from __future__ import annotations

import os

DEFAULT_PATH = "/etc/containers/runc-ckpt.yaml"
ENV_VAR = "RUNC_CKPT_CONFIG"
_UNSAFE = frozenset("\"'# ")


def config_path(flag: str | None) -> str:
    """--config beats $RUNC_CKPT_CONFIG beats the default path."""
    return flag or os.environ.get(ENV_VAR) or DEFAULT_PATH


def plain_runc_key(path: str) -> str | None:
    """The value of a plain `runc: /abs/path` line, else None (ask settings.config)."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("runc:"):
                    value = line[len("runc:"):].strip(" \t\r\n")
                    ok = value.startswith("/") and not (_UNSAFE & set(value))
                    return value if ok else None
    except (OSError, UnicodeDecodeError):
        return None
    return None
