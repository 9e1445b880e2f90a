"""CRIU's CPU compatibility check: `criu cpuinfo dump` on the checkpointing host, `check` on the target.

A checkpoint taken on a CPU with features (xsave components, AVX-512 ...)
the target lacks restores and then crashes, or CRIU refuses it deep in the
restore. CRIU has had the check for years and no engine runs it: we record
the dump's cpuinfo.img with the checkpoint and ask CRIU to check it before
a restore touches anything.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.runtime.criu import features

CPUINFO_IMG = "cpuinfo.img"


@dataclass(frozen=True)
class Verdict:
    ok: bool
    detail: str      # CRIU's own words when not ok


def dump(criu: str) -> bytes | None:
    """This host's cpuinfo.img, or None when CRIU cannot write one."""
    try:
        binary = features.resolve(criu)
    except RuncCkptError:  # no CRIU: nothing to record
        return None
    with tempfile.TemporaryDirectory(prefix="runc-ckpt-cpuinfo-") as d:
        out = subprocess.run([binary, "cpuinfo", "dump", "-D", d], capture_output=True, check=False)
        path = os.path.join(d, CPUINFO_IMG)
        if out.returncode != 0 or not os.path.isfile(path):
            return None
        with open(path, "rb") as f:
            return f.read()


def check(criu: str, image: bytes) -> Verdict:
    """Ask CRIU whether this CPU can run what was dumped on the CPU that wrote image."""
    binary = features.resolve(criu)
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
