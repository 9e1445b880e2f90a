"""write_archive(): layout, manifest, compressions, and never a partial FILE.

The container root here is a plain directory (kind "full"); the overlay case
is covered with real mounts in tests/integration/test_export_overlay.py.
"""

from __future__ import annotations

import errno
import gc
import hashlib
import io
import os
import signal
import stat
import threading
from pathlib import Path

import pytest

from runc_ckpt.archive import compression, export, exporttarget
from runc_ckpt.base.errors import RuncCkptError
from tests.export_helpers import inner, manifest_of, read_members, request


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    for d in ("bin", "etc", "proc", "dev"):
        (root / d).mkdir(parents=True)
    (root / "bin" / "app").write_bytes(os.urandom(300_000))
    (root / "etc" / "hosts").write_text("skipped")
    (root / "etc" / "conf").write_text("kept")
    return root


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("algo", ["zstd", "gzip", "none"])
def test_layout_and_compression_round_trip(tmp_path, rootfs, algo):
    vol = tmp_path / "vols" / "db" / "_data"
    vol.mkdir(parents=True)
    (vol / "table").write_bytes(b"rows")
    spec = {"mounts": [{"destination": "/db", "type": "bind", "source": str(vol)},
                       {"destination": "/host", "type": "bind", "source": "/etc"}]}
    req = request(tmp_path, rootfs, spec=spec, compress=algo, volume_roots=[str(tmp_path / "vols")])
    result = export.write_archive(req)
    path = Path(result.archive)
    with open(path, "rb") as f:
        assert compression.detect(f.read(4)) == algo
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and result.size == path.stat().st_size
    assert leftovers(path.parent) == [path.name]
    m = read_members(path)
    names = list(m)
    assert names[-1] == "runc-ckpt.manifest.json"
    assert not any(n.startswith(("./", "/")) for n in names)
    assert {"checkpoint/inventory.img", "checkpoint/pages-1.img", "spec.dump", "config.dump", "network.status",
            "stats-dump", "rootfs-diff.tar", "deleted.files", "volumes/db.tar"} <= set(names)
    assert m["checkpoint/parent"].info.issym() and m["checkpoint/parent"].info.linkname == "../pre-checkpoint"
    assert m["network.status"].data == b"null"
    assert m["deleted.files"].data == b"[]"
    diff = inner(m["rootfs-diff.tar"])
    assert diff["bin/app"].data == (rootfs / "bin" / "app").read_bytes()
    assert "etc/conf" in diff and "etc/hosts" not in diff and "proc" not in diff
    assert inner(m["volumes/db.tar"])["table"].data == b"rows"
    doc = manifest_of(m)
    assert doc["rootfs"] == {"kind": "full", "root_mode": stat.S_IMODE(rootfs.stat().st_mode)}
    assert doc["bind_mounts"] == [{"destination": "/db", "source": str(vol), "archived_as": "db"},
                                  {"destination": "/host", "source": "/etc", "archived_as": None}]
    assert doc["container"] == {"id": "c1"} and doc["created"].endswith("Z")
    regular = {n: mm for n, mm in m.items() if mm.info.isreg() and n != "runc-ckpt.manifest.json"}
    assert set(doc["members"]) == set(regular) == set(result.members)
    for n, mm in regular.items():
        assert doc["members"][n] == {"size": len(mm.data), "sha256": hashlib.sha256(mm.data).hexdigest()}
    assert result.rootfs_kind == "full" and result.volumes == ["db"]


def test_ignore_rootfs_and_volumes(tmp_path, rootfs):
    vol = tmp_path / "vols" / "db" / "_data"
    vol.mkdir(parents=True)
    spec = {"mounts": [{"destination": "/db", "type": "bind", "source": str(vol)}]}
    req = request(tmp_path, rootfs, spec=spec, include_rootfs=False, include_volumes=False,
                  image_member="pre-checkpoint", volume_roots=[str(tmp_path / "vols")])
    result = export.write_archive(req)
    m = read_members(result.archive)
    assert not {"rootfs-diff.tar", "deleted.files", "volumes/db.tar"} & set(m)
    assert "pre-checkpoint/inventory.img" in m
    doc = manifest_of(m)
    assert doc["rootfs"]["kind"] == "none" and result.rootfs_kind == "none" and result.volumes == []
    assert doc["bind_mounts"][0]["archived_as"] is None


def test_listed_bind_mount_is_archived_as_a_volume(tmp_path, rootfs):
    host = tmp_path / "host-data"
    (host / "sub").mkdir(parents=True)
    (host / "sub" / "marker").write_text("extra")
    spec = {"mounts": [{"destination": "/my-data", "type": "bind", "source": str(host), "options": ["rbind"]},
                       {"destination": "/host", "type": "bind", "source": "/etc"}]}
    result = export.write_archive(request(tmp_path, rootfs, spec=spec, extra_volumes=("/my-data",)))
    m = read_members(result.archive)
    assert inner(m["volumes/bind-my%2ddata.tar"])["sub/marker"].data == b"extra"
    assert manifest_of(m)["bind_mounts"] == [
        {"destination": "/my-data", "source": str(host), "archived_as": "bind-my%2ddata"},
        {"destination": "/host", "source": "/etc", "archived_as": None}]
    assert result.volumes == ["bind-my%2ddata"]

    skipped = export.write_archive(request(tmp_path, rootfs, spec=spec, extra_volumes=("/my-data",),
                                           include_volumes=False))
    assert not any(n.startswith("volumes/") for n in read_members(skipped.archive))
    assert manifest_of(read_members(skipped.archive))["bind_mounts"][0]["archived_as"] is None


def test_listed_destination_without_bind_mount_writes_nothing(tmp_path, rootfs):
    req = request(tmp_path, rootfs, extra_volumes=("/nowhere",))
    with pytest.raises(RuncCkptError, match=r"annotation io\.runc-ckpt\.volumes: /nowhere is not a bind mount"):
        export.write_archive(req)
    assert leftovers(Path(req.archive).parent) == []


def test_replaces_existing_file_atomically(tmp_path, rootfs):
    req = request(tmp_path, rootfs)
    Path(req.archive).write_bytes(b"old archive")
    export.write_archive(req)
    assert read_members(req.archive)["config.dump"].data


class _Failing:
    """Wraps the compressor: after `after` bytes, a write fails (ENOSPC) or sends SIGTERM to us."""

    def __init__(self, inner: object, after: int, action: str | signal.Signals) -> None:
        self.inner, self.left, self.action = inner, after, action

    def write(self, data: bytes) -> int:
        self.left -= len(data)
        if self.left < 0:
            if self.action == "enospc":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            os.kill(os.getpid(), self.action)  # type: ignore[arg-type]
        return self.inner.write(data)  # type: ignore[attr-defined]

    def flush(self, *mode: int) -> None:
        """The compressor's flush (a zstd frame's end takes a mode: archive.tarstage's splice)."""
        self.inner.flush(*mode)  # type: ignore[attr-defined]

    def close(self) -> None:
        self.inner.close()  # type: ignore[attr-defined]


def _inject(monkeypatch: pytest.MonkeyPatch, action: str | signal.Signals) -> None:
    real = compression.compressing_writer
    monkeypatch.setattr(compression, "compressing_writer",
                        lambda raw, *a: _Failing(real(raw, *a), 200_000, action))


def test_disk_full_mid_stream_leaves_nothing(tmp_path, rootfs, monkeypatch):
    _inject(monkeypatch, "enospc")
    req = request(tmp_path, rootfs)
    with pytest.raises(RuncCkptError, match="No space left on device"):
        export.write_archive(req)
    assert leftovers(Path(req.archive).parent) == []


def test_disk_full_keeps_the_old_file(tmp_path, rootfs, monkeypatch):
    _inject(monkeypatch, "enospc")
    req = request(tmp_path, rootfs)
    Path(req.archive).write_bytes(b"old archive")
    with pytest.raises(RuncCkptError):
        export.write_archive(req)
    assert Path(req.archive).read_bytes() == b"old archive"
    assert leftovers(Path(req.archive).parent) == ["ckpt.tar.zst"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_mid_stream_leaves_nothing_and_restores_handler(tmp_path, rootfs, monkeypatch, sig):
    _inject(monkeypatch, sig)
    seen = []
    old = signal.signal(sig, lambda s, f: seen.append(s))
    try:
        req = request(tmp_path, rootfs)
        with pytest.raises(RuncCkptError, match=f"interrupted by {sig.name}"):
            export.write_archive(req)
        assert leftovers(Path(req.archive).parent) == []
        os.kill(os.getpid(), sig)      # our handler is back
        assert seen == [sig]
    finally:
        signal.signal(sig, old)


def test_missing_target_directory(tmp_path, rootfs):
    req = request(tmp_path, rootfs)._replace(archive=str(tmp_path / "no" / "such" / "dir" / "a.tar.zst"))
    with pytest.raises(RuncCkptError, match="directory .* does not exist"):
        export.write_archive(req)
    assert not (tmp_path / "no").exists()


def test_target_is_a_directory(tmp_path, rootfs):
    req = request(tmp_path, rootfs)
    os.makedirs(req.archive)
    with pytest.raises(RuncCkptError, match="is a directory"):
        export.write_archive(req)


def test_unwritable_target_directory(tmp_path, rootfs, monkeypatch):
    def refuse(*_a: object, **_k: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")
    monkeypatch.setattr(exporttarget.atomicfile, "new_file", refuse)
    req = request(tmp_path, rootfs)
    with pytest.raises(RuncCkptError, match="cannot write in .*Permission denied"):
        export.write_archive(req)


def _probes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """check_target's probe files, as created (each is removed at once)."""
    made: list[str] = []
    real = exporttarget.atomicfile.new_file

    def counting(*a: object, **k: object):
        fd, path = real(*a, **k)  # type: ignore[arg-type]  # the caller's own arguments
        if os.path.basename(path).startswith(exporttarget.PROBE_PREFIX):
            made.append(path)
        return fd, path
    monkeypatch.setattr(exporttarget.atomicfile, "new_file", counting)
    return made


def test_a_checked_target_is_probed_once_per_export(tmp_path, rootfs, monkeypatch):
    """checkpoint --export checks its target before the dump (one probe); the write does not probe again."""
    made = _probes(monkeypatch)
    req = request(tmp_path, rootfs)
    req = req._replace(archive=exporttarget.check_target(req.archive), target_checked=True)
    export.write_archive(req)
    assert len(made) == 1 and os.path.isfile(req.archive)
    assert not any(os.path.exists(p) for p in made)
    unchecked = request(tmp_path, rootfs, archive=str(tmp_path / "second.tar.zst"))  # auto-export, an image's layer: the write checks
    export.write_archive(unchecked)
    assert len(made) == 2


def test_bad_level_and_algorithm(tmp_path, rootfs):
    with pytest.raises(RuncCkptError, match="out of range 1-22"):
        export.write_archive(request(tmp_path, rootfs, level=23))
    with pytest.raises(RuncCkptError, match="unknown compression"):
        export.write_archive(request(tmp_path, rootfs, compress="xz"))


def test_missing_volume_data_is_a_clear_error(tmp_path, rootfs):
    spec = {"mounts": [{"destination": "/db", "type": "bind", "source": str(tmp_path / "vols/db/_data")}]}
    req = request(tmp_path, rootfs, spec=spec, volume_roots=[str(tmp_path / "vols")])
    with pytest.raises(RuncCkptError, match="volume db: data directory .* does not exist"):
        export.write_archive(req)
    assert leftovers(Path(req.archive).parent) == []


def _os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.mark.parametrize(("expected", "workers"), [(1 << 20, False), (None, True), (64 << 20, True)],
                         ids=["under-one-job", "unknown", "several-jobs"])
def test_zstd_starts_its_workers_only_for_more_than_one_job(expected, workers):
    """zstd's workers take jobs of 4 x its window (8 MiB at level 3): less input than that is compressed in the
    caller's thread, without their start (a tiny checkpoint's export); an unknown size keeps them."""
    before = _os_threads()
    w = compression.compressing_writer(io.BytesIO(), "zstd", 3, 2, expected)
    w.write(os.urandom(1 << 20))
    during = _os_threads()
    w.close()
    del w
    gc.collect()                # the compressor's workers end with it
    assert (during > before) is workers


def test_the_writeback_thread_starts_only_once_a_step_is_written(tmp_path, rootfs, monkeypatch):
    """A small archive has no writeback to overlap and starts no thread; past STEP bytes the thread runs."""
    started = []
    real = threading.Thread

    class Recording(real):  # type: ignore[misc,valid-type]
        def start(self) -> None:
            started.append(self.name)
            super().start()

    monkeypatch.setattr(export.threading, "Thread", Recording)
    export.write_archive(request(tmp_path, rootfs))
    assert "runc-ckpt-writeback" not in started
    monkeypatch.setattr(export._EarlyWriteback, "STEP", 4096)
    req = request(tmp_path, rootfs, archive=str(tmp_path / "out" / "big.tar.zst"), compress="none")
    export.write_archive(req)
    assert started.count("runc-ckpt-writeback") == 1
    assert read_members(req.archive)["rootfs-diff.tar"]
