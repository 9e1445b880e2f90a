"""CRIU lazy-pages / page-server for a stream: detect up front, else fall back to the stream.

runc's --lazy-pages and --page-server make CRIU leave memory behind on the
source (served on demand to a `criu lazy-pages` daemon on the target). In a
stream that would mean a second connection and a daemon on each side, and
CRIU's lazy restore fails on kernels where userfaultfd's non-cooperative
events are missing. So a stream asks CRIU first (`criu check --feature
uffd-noncoop`) and, before anything is touched, drops the two flags with a
warning that says why, sending the memory in the stream instead. Where CRIU
reports support the fallback still happens, because runc-ckpt does not
drive the lazy-pages daemon over the stream; the warning says that instead.
"""

from __future__ import annotations

from runc_ckpt.base import runclog
from runc_ckpt.base.globalflags import GlobalFlags
from runc_ckpt.runtime.criu import features

FEATURE = "uffd-noncoop"
FLAGS = ("lazy-pages", "page-server", "status-fd")  # status-fd only reports lazy-pages readiness


def _flag_name(tok: str) -> str:
    return tok.lstrip("-").partition("=")[0]


def wanted(runc_flags: list[str]) -> bool:
    return any(_flag_name(t) in FLAGS[:2] for t in runc_flags if t.startswith("-"))


def fallback_reason(criu: str) -> str:
    """Why this stream sends memory inline (CRIU's words when the kernel lacks support)."""
    answer = features.ask(features.resolve(criu), FEATURE)
    if not answer.supported:
        return f"CRIU lazy-pages is not available here (criu check --feature {FEATURE}: {answer.detail})"
    return (f"CRIU reports {FEATURE} support, but runc-ckpt does not run CRIU's lazy-pages daemon "
            "over a stream")


def without_lazy_flags(runc_flags: list[str], flags: GlobalFlags, criu: str) -> list[str]:
    """runc_flags minus --lazy-pages/--page-server/--status-fd, with one warning; unchanged if none given."""
    if not wanted(runc_flags):
        return runc_flags
    runclog.warn(flags, f"--export -: {fallback_reason(criu)}; sending the memory pages in the stream instead")
    out: list[str] = []
    skip = False
    for tok in runc_flags:
        if skip:
            skip = False
            continue
        name = _flag_name(tok) if tok.startswith("-") else ""
        if name in FLAGS:
            skip = name != "lazy-pages" and "=" not in tok   # the value of --page-server/--status-fd
            continue
        out.append(tok)
    return out
