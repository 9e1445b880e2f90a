"""Shared test fixtures: where the installed runc-ckpt is, and real tools.

A test that needs a tool that is missing FAILS (never skips): CI must
prove the real stack, and a silent skip would hide a missing install step.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def require_tool(name: str) -> str:
    """Path of a tool the test needs; a missing one fails the test."""
    path = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin")
    if path is None:
        pytest.fail(f"{name} is not installed: run contrib/install-deps.sh", pytrace=False)
    return path


@pytest.fixture(scope="session")
def runc_ckpt_bin() -> str:
    """The installed sh front end: $RUNC_CKPT_BIN, else beside this Python."""
    path = os.environ.get("RUNC_CKPT_BIN") or os.path.join(os.path.dirname(sys.executable), "runc-ckpt")
    if not os.access(path, os.X_OK):
        pytest.fail(f"runc-ckpt is not installed at {path}: run `make test`", pytrace=False)
    return path


@pytest.fixture(scope="session")
def real_runc() -> str:
    return require_tool("runc")
