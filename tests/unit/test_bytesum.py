"""archive/bytesum: the exact sum of bytes that tar checksums are, whatever the length and content."""

from __future__ import annotations

import os

import pytest

from runc_ckpt.archive.bytesum import byte_sum


@pytest.mark.parametrize("n", [0, 1, 8, 100, 255, 256, 257, 511, 512, 513, 1024, 5000])
def test_byte_sum_is_sum(n):
    for data in (b"\xff" * n, bytes(n), os.urandom(n)):
        assert byte_sum(data) == sum(data)
