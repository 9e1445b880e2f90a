"""skopeo as the transport to registries and containers-storage: no HTTP client of our own.

Its settings come from the environment as podman's do (CONTAINERS_REGISTRIES_CONF,
CONTAINERS_STORAGE_CONF, REGISTRY_AUTH_FILE, policy.json), so the same
registry and storage configuration serves both (skopeo 1.9 ignores
$CONTAINERS_REGISTRIES_CONF, so it is passed as --registries-conf). A failure becomes one line:
skopeo's own last message.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading

from runc_ckpt.base import runclog
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.globalflags import GlobalFlags

_FATAL = re.compile(r'level=fatal msg="(.*)"\s*$')
TIMEOUT = 3600
_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def find() -> str:
    path = shutil.which("skopeo")
    if path is None:
        raise RuncCkptError("skopeo is not installed: docker:// and containers-storage: references need it "
                            "(apt-get install skopeo), or use oci: / oci-archive:")
    return path


def _message(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if not lines:
        return "no message"
    m = _FATAL.search(lines[-1])
    return m.group(1).replace('\\"', '"') if m else lines[-1]


def _interrupted(signum: int, _frame: object) -> None:
    raise RuncCkptError(f"interrupted by {signal.Signals(signum).name} while skopeo was copying the image")


def copy(src: str, dst: str, flags: GlobalFlags | None, extra: tuple[str, ...] = ()) -> None:
    """`skopeo copy src dst`; raises RuncCkptError with skopeo's message on failure."""
    # podman reads $CONTAINERS_REGISTRIES_CONF, skopeo 1.9 only its (hidden) --registries-conf:
    # pass it on, so both see the same registries (insecure ones, mirrors).
    conf = os.environ.get("CONTAINERS_REGISTRIES_CONF")
    argv = [find(), *(("--registries-conf", conf) if conf else ()), "copy", "--quiet", *extra, src, dst]
    if flags is not None:
        runclog.debug(flags, f"image: running {' '.join(argv)}")
    old = {}
    if threading.current_thread() is threading.main_thread():
        old = {sig: signal.signal(sig, _interrupted) for sig in _SIGNALS}
    try:
        # On the signal's exception subprocess.run kills skopeo; the callers' scratch space goes too.
        out = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                             check=False, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        raise RuncCkptError(f"skopeo copy {src} {dst}: no answer after {TIMEOUT}s") from None
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if out.returncode != 0:
        raise RuncCkptError(f"skopeo copy {src} {dst} failed: {_message(out.stderr)}")
