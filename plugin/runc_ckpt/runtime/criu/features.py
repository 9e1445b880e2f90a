"""Does this CRIU, on this kernel, support memory tracking (the soft-dirty bit)?

A pre-dump, and a dump on top of one, need it. runc 1.1.5 finds out only
after it has started talking to CRIU and then says just "CRIU is missing
features"; we ask first (`criu check --feature mem_dirty_track`), before the
container is touched, and can say what is missing. The answer depends only
on the CRIU binary and the kernel, so it is cached in the state dir
(runtime.hostcache); a new CRIU, kernel or boot re-asks.
"""

from __future__ import annotations

import os
import subprocess

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.record import Record
from runc_ckpt.runtime import hostcache

FEATURE = "mem_dirty_track"
CACHE_NAME = "criu-features"


class Answer(Record):
    supported: bool
    detail: str  # CRIU's own words when unsupported


def resolve(criu: str) -> str:
    """The CRIU binary runc would run for --criu (a name is looked up on PATH)."""
    import shutil  # here, not at the top: the flow loads this module before runc; only a pre-dump asks
    path = criu if "/" in criu else shutil.which(criu)
    if path is None or not os.access(path, os.X_OK):
        raise RuncCkptError(f"criu binary {criu!r} not found: install CRIU or pass --criu PATH")
    return os.path.realpath(path)


def ask(criu_path: str, feature: str = FEATURE) -> Answer:
    """CRIU's own answer for one feature (`criu check --feature NAME`), uncached."""
    try:
        out = subprocess.run([criu_path, "check", "--feature", feature], capture_output=True, text=True,
                             stdin=subprocess.DEVNULL, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RuncCkptError(f"cannot run {criu_path} check: {e}") from None
    lines = [ln.strip() for ln in (out.stdout + out.stderr).splitlines() if ln.strip()]
    return Answer(out.returncode == 0, lines[-1] if lines else f"criu check exited {out.returncode}")


def memory_tracking(criu: str, cache_dir: str) -> Answer:
    """Whether CRIU can track memory changes; cached in cache_dir."""
    criu_path = resolve(criu)
    doc = hostcache.remember(cache_dir, CACHE_NAME, criu_path, {"feature": FEATURE},
                             lambda: _as_json(ask(criu_path)))
    if isinstance(doc, dict):
        return Answer(bool(doc.get("supported")), str(doc.get("detail", "")))
    return ask(criu_path)


def _as_json(answer: Answer) -> dict[str, object]:
    return {"supported": answer.supported, "detail": answer.detail}


PRE_DUMP = "pre-dump"            # CRIU's own: soft-dirty tracked pre-dumps, then a dump on top
CONTENT_DIFF = "content-diff"    # two full dumps compared page by page (runtime/criu/incremental)


class MemoryPrecopy(Record):
    """How memory can move before a freeze on this host, and why: to pick it and to say which was taken."""

    method: str   # PRE_DUMP or CONTENT_DIFF
    reason: str


def memory_precopy(criu: str, cache_dir: str) -> MemoryPrecopy:
    """Real pre-dump where CRIU tracks memory (it copies only what changed, with no second full dump);
    the content comparison of two full dumps everywhere else (no soft-dirty: arm64, many kernels, criu#1859)."""
    answer = memory_tracking(criu, cache_dir)
    if answer.supported:
        return MemoryPrecopy(PRE_DUMP, f"CRIU tracks memory changes (criu check --feature {FEATURE})")
    return MemoryPrecopy(CONTENT_DIFF, f"no memory tracking here ({answer.detail}): "
                                       f"two full dumps compared by page content")


def require_memory_tracking(criu: str, cache_dir: str, why: str) -> None:
    """Raise a clear error, before anything is touched, where memory tracking is missing."""
    answer = memory_tracking(criu, cache_dir)
    if not answer.supported:
        raise RuncCkptError(f"{why} needs CRIU memory tracking, which this system does not support "
                            f"(criu check --feature {FEATURE}: {answer.detail}); "
                            f"the container was not touched: take a full checkpoint instead")
