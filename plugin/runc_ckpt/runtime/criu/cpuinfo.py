"""CRIU's CPU compatibility check: `criu cpuinfo dump` on the checkpointing host, `check` on the target.

A checkpoint taken on a CPU with features (xsave components, AVX-512 ...)
the target lacks restores and then crashes, or CRIU refuses it deep in the
restore. CRIU has had the check for years and no engine runs it: we record
the dump's cpuinfo.img with the checkpoint and ask CRIU to check it before
a restore touches anything.

This host's own cpuinfo.img changes only with CRIU, the kernel or a reboot,
so it is cached in the state dir (runtime.hostcache). A checkpoint's image
that is byte for byte this host's own, as dumped by the same CRIU in this
boot, passes CRIU's check by construction (the same CPU against itself):
the check's ~40 ms run of CRIU is then skipped. Any other image is checked.
"""

from __future__ import annotations

import base64
import binascii
import os
import subprocess

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.record import Record
from runc_ckpt.runtime import hostcache
from runc_ckpt.runtime.criu import features

CPUINFO_IMG = "cpuinfo.img"
CACHE_NAME = "criu-cpuinfo"


class Verdict(Record):
    ok: bool
    detail: str      # CRIU's own words when not ok


def dump(criu: str, cache_dir: str | None = None) -> bytes | None:
    """This host's cpuinfo.img, or None when CRIU cannot write one; cached in cache_dir (None: not cached)."""
    try:
        binary = features.resolve(criu)
    except RuncCkptError:  # no CRIU: nothing to record
        return None
    text = hostcache.remember(cache_dir, CACHE_NAME, binary, {}, lambda: _as_text(_dump(binary)))
    if text is None:        # CRIU wrote no image (a failure is never cached)
        return None
    image = _from_text(text)
    return image if image is not None else _dump(binary)     # a damaged cache entry: ask CRIU again


def _as_text(image: bytes | None) -> str | None:
    return base64.b64encode(image).decode("ascii") if image is not None else None


def _from_text(text: object) -> bytes | None:
    """The image _as_text cached, or None when the cached value is not valid base64 text."""
    if not isinstance(text, str):
        return None
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        return None


def _dump(binary: str) -> bytes | None:
    """`criu cpuinfo dump`, uncached."""
    import tempfile  # here, not at the top: a dump is cached per boot (runtime.hostcache), ~2 ms to import
    with tempfile.TemporaryDirectory(prefix="runc-ckpt-cpuinfo-") as d:
        out = subprocess.run([binary, "cpuinfo", "dump", "-D", d], capture_output=True, check=False)
        path = os.path.join(d, CPUINFO_IMG)
        if out.returncode != 0 or not os.path.isfile(path):
            return None
        with open(path, "rb") as f:
            return f.read()


def check(criu: str, image: bytes, cache_dir: str | None = None) -> Verdict:
    """Ask CRIU whether this CPU can run what was dumped on the CPU that wrote image
    (not when image is this host's own, cached in cache_dir: see above)."""
    binary = features.resolve(criu)
    if cache_dir is not None and _cached_own(binary, cache_dir) == image:
        return Verdict(True, "")
    import tempfile  # here, not at the top: only another host's image is checked (~2 ms to import)
    with tempfile.TemporaryDirectory(prefix="runc-ckpt-cpuinfo-") as d:
        with open(os.path.join(d, CPUINFO_IMG), "wb") as f:
            f.write(image)
        out = subprocess.run([binary, "cpuinfo", "check", "-D", d, "-o", os.path.join(d, "check.log"), "-v1"],
                             capture_output=True, text=True, check=False)
        if out.returncode == 0:
            return Verdict(True, "")
        try:
            with open(os.path.join(d, "check.log"), encoding="utf-8", errors="replace") as f:
                log = f.read()
        except OSError:
            log = out.stderr
        lines = [ln.strip() for ln in (log + out.stderr).splitlines() if "rror" in ln or "not" in ln]
        return Verdict(False, "; ".join(dict.fromkeys(lines))[:300] or f"exit status {out.returncode}")


def _cached_own(binary: str, cache_dir: str) -> bytes | None:
    """This host's cpuinfo.img if the cache holds it for this CRIU and boot; never asks CRIU."""
    try:
        return _from_text(hostcache.lookup(cache_dir, CACHE_NAME, hostcache.binary_key(binary)))
    except OSError:
        return None
