"""What the export and import progress displays count: input bytes per ~1 MiB hand-off, with a true total."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from runc_ckpt.archive import export, reader
from runc_ckpt.archive.scan import Scanner
from runc_ckpt.archive.writer import CHUNK, TarWriter
from runc_ckpt.base import progress
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.globalflags import GlobalFlags
from tests.export_helpers import request


class Recorder(progress.NullProgress):
    """A progress display that keeps every update() and its total, as if a person were watching."""

    watched = True

    def __init__(self, total: int | None = None) -> None:
        self.total = total
        self.updates: list[int] = []
        self.closed = False

    def update(self, nbytes: int) -> None:
        self.updates.append(nbytes)

    def close(self) -> None:
        self.closed = True

    def __exit__(self, *exc: object) -> None:
        self.close()


class Sink:
    def write(self, data: bytes) -> int:
        return len(data)


@pytest.fixture
def shown(monkeypatch: pytest.MonkeyPatch) -> list[Recorder]:
    """Progress.create hands out Recorders (as if a person were watching) and lists them."""
    made: list[Recorder] = []

    def create(flags: GlobalFlags, label: str, total: int | None = None, stream: object = None) -> Recorder:
        r = Recorder(total)
        made.append(r)
        return r

    monkeypatch.setattr(progress.Progress, "create", staticmethod(create))
    return made


def test_writer_counts_tree_data_per_chunk_not_per_file(tmp_path: Path):
    for i in range(2000):
        (tmp_path / f"f{i}").write_bytes(b"x" * 700)
    (tmp_path / "big").write_bytes(os.urandom(3 * CHUNK + 5))
    scan = Scanner()
    scan.walk(str(tmp_path))
    plan = scan.plan()
    rec = Recorder()
    tw = TarWriter(Sink(), progress=rec)  # type: ignore[arg-type]
    tw.add_bytes("meta.json", b"{}" * 1000)
    tw.add_tree("tree.tar", plan)
    tw.close()
    assert sum(rec.updates) == plan.size            # metadata made by add_bytes is not input
    assert min(rec.updates) >= 0
    assert len([n for n in rec.updates if n]) < 20   # ~1 MiB pieces, not 2000 files


def test_export_total_is_planned_and_met(tmp_path: Path, shown: list[Recorder]):
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    (rootfs / "app").write_bytes(os.urandom(2 * CHUNK))
    vol = tmp_path / "vols" / "db" / "_data"
    vol.mkdir(parents=True)
    (vol / "table").write_bytes(os.urandom(CHUNK))
    spec = {"mounts": [{"destination": "/db", "type": "bind", "source": str(vol)}]}
    req = request(tmp_path, rootfs, spec=spec, volume_roots=[str(tmp_path / "vols")], flags=GlobalFlags())
    export.write_archive(req)
    [rec] = shown
    assert rec.total is not None and rec.total > 3 * CHUNK
    stats_dump = (tmp_path / "stats-dump").stat().st_size   # a work-dir file, outside the plan
    assert sum(rec.updates) == rec.total + stats_dump
    assert rec.closed


def test_export_without_flags_shows_nothing(tmp_path: Path, shown: list[Recorder]):
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    export.write_archive(request(tmp_path, rootfs))
    assert shown == []


def test_import_counts_compressed_bytes_of_the_file(tmp_path: Path, shown: list[Recorder]):
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    (rootfs / "app").write_bytes(os.urandom(2 * CHUNK))
    req = request(tmp_path, rootfs)
    (tmp_path / "images" / "parent").unlink()        # the helper's fake link is not one stage() accepts
    archive = export.write_archive(req).archive
    staged = reader.stage(archive, reader.Targets(None, None, None), flags=GlobalFlags())
    staged.discard()
    [rec] = shown
    assert rec.total == os.path.getsize(archive)
    assert sum(rec.updates) == rec.total and rec.closed
    assert len(rec.updates) < 40                     # per decompressor read, not per member


def test_import_of_a_bad_file_still_ends_the_display(tmp_path: Path, shown: list[Recorder]):
    bad = tmp_path / "bad.tar.zst"
    bad.write_bytes(b"\x28\xb5\x2f\xfd" + b"garbage" * 100)
    with pytest.raises(RuncCkptError):
        reader.stage(str(bad), reader.Targets(None, None, None), flags=GlobalFlags())
    assert shown[0].closed


def test_counted_file_passes_peek_and_read_through():
    rec = Recorder()
    f = reader.CountedFile(io.BufferedReader(io.BytesIO(b"abcdef")), rec)  # type: ignore[arg-type]
    assert f.peek(2)[:2] == b"ab"
    assert f.read(4) == b"abcd" and f.read() == b"ef" and f.read(3) == b""
    assert rec.updates == [4, 2, 0]
