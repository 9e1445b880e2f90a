"""The root dir mode CRIU recorded, read from synthetic images in CRIU's wire format."""

from __future__ import annotations

import struct

from runc_ckpt.runtime.criu.rootmode import root_mode
from tests.criu_wire import field as _field


def _image(path, magic: int, entries: list[bytes]) -> None:
    data = struct.pack("<II", 0x54564319, magic)
    for e in entries:
        data += struct.pack("<I", len(e)) + e
    path.write_bytes(data)


def _reg(fid: int, name: bytes, mode: int) -> bytes:
    reg = _field(1, fid) + _field(6, name) + _field(7, 162) + _field(10, mode)
    return _field(1, 1) + _field(2, fid) + _field(3, reg)


def test_root_of_init_task(tmp_path):
    _image(tmp_path / "pstree.img", 0x50273030, [_field(1, 1) + _field(2, 0), _field(1, 18) + _field(2, 1)])
    _image(tmp_path / "fs-1.img", 0x51403912, [_field(1, 5) + _field(2, 6) + _field(3, 18)])
    _image(tmp_path / "files.img", 0x56303138, [_reg(3, b"/", 0o40700), _reg(5, b"/", 0o40555),
                                                 _reg(6, b"/", 0o40551)])
    assert root_mode(str(tmp_path)) == 0o551


def test_fallback_and_missing(tmp_path):
    assert root_mode(str(tmp_path)) is None
    _image(tmp_path / "pstree.img", 0x50273030, [_field(1, 1)])
    _image(tmp_path / "files.img", 0x56303138, [_reg(1, b"/bin/sh", 0o100755), _reg(2, b"/", 0o40555)])
    assert root_mode(str(tmp_path)) == 0o555
