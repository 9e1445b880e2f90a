"""CRIU options runc 1.1.5 has no flag for (--tcp-close), given to CRIU through a config file.

runc hands CRIU the file named by the bundle's `org.criu.config` annotation
(else /etc/criu/runc.conf). Changing either means editing the caller's
config.json or the host's CRIU setup. CRIU also reads the file named by the
CRIU_CONFIG_FILE environment variable, in swrk (RPC) mode too, and runc
passes its environment to `criu swrk`. So runc-ckpt sets CRIU_CONFIG_FILE
for the runc it starts, and nothing on disk that belongs to anyone else
changes. The annotation's file (or runc.conf) is still read by CRIU, after
ours, so its settings are kept and win on conflict; a CRIU_CONFIG_FILE the
caller already set is merged into the generated file.

The generated file is named by its content's hash under a runtime dir, so
runc can be exec'd (no cleanup needed) and concurrent calls agree.
"""

from __future__ import annotations

import hashlib
import os

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.runtime import atomicfile

ENV_VAR = "CRIU_CONFIG_FILE"


def _runtime_dir() -> str:
    if os.geteuid() == 0:
        return "/run/runc-ckpt"
    import tempfile  # here, not at the top: ~2 ms of start-up for a rare path
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return os.path.join(base, "runc-ckpt")


def config_text(options: list[str], environ: dict[str, str]) -> str:
    """The caller's CRIU_CONFIG_FILE content (if any) followed by our options, one a line."""
    text = ""
    existing = environ.get(ENV_VAR)
    if existing:
        try:
            with open(existing, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise RuncCkptError(f"{ENV_VAR} {existing}: {e.strerror}") from None
        if text and not text.endswith("\n"):
            text += "\n"
    return text + "".join(f"{o}\n" for o in options)


def environ_with(options: list[str], environ: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of environ whose CRIU_CONFIG_FILE adds options (e.g. ["tcp-close"])."""
    env = dict(os.environ if environ is None else environ)
    text = config_text(options, env)
    directory = _runtime_dir()
    path = os.path.join(directory, f"criu-{hashlib.sha256(text.encode()).hexdigest()[:16]}.conf")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        if not os.path.exists(path):
            atomicfile.write_bytes(path, text.encode(), mode=0o644)
    except OSError as e:
        raise RuncCkptError(f"cannot write CRIU config file {path}: {e.strerror}") from None
    env[ENV_VAR] = path
    return env
