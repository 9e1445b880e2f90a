"""runtime/coldpages: free page reporting found from virtio's sysfs, and the warming write that leaves nothing."""

from __future__ import annotations

import os

import pytest

from runc_ckpt.runtime import coldpages


def _device(root, name: str, device: str, features: str) -> None:
    d = root / name
    d.mkdir(parents=True)
    (d / "device").write_text(device + "\n")
    (d / "features").write_text(features + "\n")


@pytest.mark.parametrize(("devices", "reported"), [
    ([("virtio0", "0x0005", "0110010")], True),                     # a balloon reporting free pages (bit 5)
    ([("virtio0", "0x0005", "0110000")], False),                    # a balloon without it
    ([("virtio1", "0x0002", "0000010"), ("virtio0", "0x0005", "011")], False),   # bit 5 of a disk; a short string
    ([("virtio2", "0x0001", "111111"), ("virtio0", "0x0005", "000001")], True),
    ([], False),
])
def test_free_page_reporting_is_a_balloons_feature_bit_5(tmp_path, devices, reported):
    for name, device, features in devices:
        _device(tmp_path, name, device, features)
    assert coldpages.reported(str(tmp_path)) is reported


def test_without_virtio_in_sysfs_nothing_is_reported(tmp_path):
    assert coldpages.reported(str(tmp_path / "absent")) is False
    _device(tmp_path, "virtio0", "not-hex", "111111")
    assert coldpages.reported(str(tmp_path)) is False


def test_warming_writes_the_bytes_in_a_thread_and_release_leaves_nothing(tmp_path, monkeypatch):
    written: list[int] = []
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: written.append(len(data)) or real_write(fd, data))
    warming = coldpages.Warming(str(tmp_path), 3 * coldpages.CHUNK + 5)
    assert warming.release() >= 0
    assert sum(written) == 3 * coldpages.CHUNK + 5 and warming.seconds > 0
    assert os.listdir(tmp_path) == []


def test_warming_is_best_effort(tmp_path, monkeypatch):
    """A dir it cannot write into, or a full one, is no error (the dump runs anyway), and no file is left;
    a file it did not make is never deleted."""
    assert coldpages.Warming(str(tmp_path / "gone"), 1 << 20).release() >= 0
    writes = iter([coldpages.CHUNK, OSError(28, "No space left on device")])

    def write(fd, data):
        got = next(writes)
        if isinstance(got, OSError):
            raise got
        return got
    monkeypatch.setattr(os, "write", write)
    coldpages.Warming(str(tmp_path), 4 * coldpages.CHUNK).release()
    assert os.listdir(tmp_path) == []
