"""base.namedigest: the names of lock files and scratch dirs keep the digest hashlib gives, without loading it."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from runc_ckpt.base import namedigest


@pytest.mark.parametrize("text", ["", "ctr\0/run/runc\0web", "é" * 300])
def test_the_same_digest_as_hashlib(text):
    assert namedigest.hex_digest(text, 16) == hashlib.sha256(text.encode()).hexdigest()[:16]
    assert namedigest.hex_digest(text, 64) == hashlib.sha256(text.encode()).hexdigest()


def test_a_lock_name_loads_no_openssl():
    code = ("import sys\nfrom runc_ckpt.runtime import lock\nlock.container_key('/run/runc', 'web')\n"
            "print(sorted(m for m in ('hashlib', '_hashlib', 'tempfile', 'shutil', 'secrets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
