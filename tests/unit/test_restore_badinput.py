"""restore --import with bad input: one clear error line, non-zero exit, nothing applied, no staging left."""

from __future__ import annotations

import json
import os

import pytest

from tests.hostile import builder
from tests.hostile.harness import make_target, snapshot

SKIP = ("fake-runc.log", "archive.tar", "state-ok", "restore-rc")


@pytest.fixture
def t(tmp_path, runc_ckpt_bin):
    return make_target(tmp_path, runc_ckpt_bin)


def _refused(t, out, fragment):
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in out.stderr
    assert not [n for n in os.listdir(t.bundle) if n.startswith(".runc-ckpt")]
    if t.rootfs.exists():
        assert not [n for n in os.listdir(t.rootfs) if n.startswith(".runc-ckpt")]
    assert not [c for c in t.runc_calls() if " restore " in f" {c} "]


def _run(t, archive_bytes_or_archive, fragment, *extra, cid="hostile-test", **write_kw):
    path = t.tmp / "archive.tar"
    if isinstance(archive_bytes_or_archive, bytes):
        path.write_bytes(archive_bytes_or_archive)
    else:
        builder.write(archive_bytes_or_archive, path, **write_kw)
    before = snapshot(t.tmp, skip=SKIP)
    out = t.restore("--import", str(path), *extra, cid=cid)
    _refused(t, out, fragment)
    assert snapshot(t.tmp, skip=SKIP) == before
    return out


def test_not_an_archive(t):
    _run(t, b"hello, this is not a tar file at all\n" * 20, "not a checkpoint archive")


def test_corrupt_zstd(t):
    _run(t, b"\x28\xb5\x2f\xfd" + os.urandom(4000), "corrupt")


def test_corrupt_gzip(t):
    _run(t, b"\x1f\x8b\x08\x00" + os.urandom(4000), "corrupt")


def test_truncated_zstd(t):
    a = builder.base(str(t.volume), rootfs_diff=builder.tar_bytes([builder.f("big", os.urandom(300_000))]))
    raw = builder.write(a, t.tmp / "full.tar").read_bytes()
    (t.tmp / "full.tar").unlink()
    _run(t, raw[: len(raw) // 2], "truncated")


def test_unknown_format_version(t):
    a = builder.base(str(t.volume))
    a.manifest_override["format_version"] = 99
    _run(t, a, "format version 99 is not supported")


def test_manifest_not_json(t):
    a = builder.base(str(t.volume))
    a.manifest = False
    a.add("runc-ckpt.manifest.json", b"{not json")
    _run(t, a, "manifest is not valid JSON")


def test_missing_inventory(t):
    _run(t, builder.base(str(t.volume), inventory=False), "inventory.img")


def test_missing_base_rootfs(t):
    import shutil
    shutil.rmtree(t.rootfs)
    _run(t, builder.base(str(t.volume)), "base rootfs")


def test_empty_base_rootfs_for_a_diff_archive(t):
    for p in sorted(t.rootfs.rglob("*"), reverse=True):
        p.rmdir() if p.is_dir() else p.unlink()
    _run(t, builder.base(str(t.volume)), "is empty")


def test_id_already_in_use(t):
    t.set_container_exists()
    _run(t, builder.base(str(t.volume)), "already exists")


@pytest.mark.parametrize("size, fragment", [(300_000, "truncated"), (3 << 20, "already exists")])
def test_a_taken_id_is_judged_before_a_big_archive_is_read(t, size, fragment):
    """runc is asked about the ID under its lock; a small archive is staged while it answers (its own error
    comes first), a big one (> importer.SMALL_ARCHIVE) is not read until the answer: a taken ID refuses it."""
    t.set_container_exists()
    a = builder.base(str(t.volume), rootfs_diff=builder.tar_bytes([builder.f("big", os.urandom(size))]))
    raw = builder.write(a, t.tmp / "full.tar").read_bytes()
    (t.tmp / "full.tar").unlink()
    _run(t, raw[: len(raw) - 4096], fragment)


def test_runc_is_asked_about_an_id_only_when_its_root_has_an_entry_of_that_name(t):
    """runc 1.1.5 loads <root>/<ID>/state.json: with no entry of that name it can only answer "does not exist",
    so a new ID starts no runc state; an ID with an entry there is asked."""
    a = builder.write(builder.base(str(t.volume)), t.tmp / "archive.tar")
    out = t.restore("--import", str(a))
    assert out.returncode == 0, out.stderr
    assert not [c for c in t.runc_calls() if c.split()[2:3] == ["state"]]
    t.set_container_exists("other")
    out = t.restore("--import", str(a), cid="other")
    assert out.returncode != 0 and "container other already exists" in out.stderr
    assert [c for c in t.runc_calls() if c.split()[2:] == ["state", "other"]]


def test_id_from_archive_already_in_use(t):
    t.set_container_exists(builder.CID)
    _run(t, builder.base(str(t.volume)), "already exists", cid=None)


def test_volume_already_holds_data(t):
    (t.volume / "old").write_text("someone's data")
    a = builder.base(str(t.volume), volume_tar=builder.tar_bytes([builder.f("v", b"new")]))
    _run(t, a, "already holds data")


def test_missing_user_bind_source_is_named(t):
    a = builder.base(str(t.volume))
    spec = builder.spec(str(t.volume))
    spec["mounts"].append({"destination": "/srv", "type": "bind", "source": "/nonexistent/host/path",
                           "options": ["rbind"]})
    a.members[0] = builder.f("spec.dump", json.dumps(spec).encode(), mode=0o600)
    _run(t, a, "/nonexistent/host/path")


def test_image_path_with_import_is_refused(t):
    _run(t, builder.base(str(t.volume)), "--image-path", "--image-path", "/x")


def test_malformed_bundle_config(t):
    (t.bundle / "config.json").write_text("{broken")
    _run(t, builder.base(str(t.volume)), "config.json")


def test_runc_failure_leaves_no_staging_and_deletes_no_container_it_did_not_make(t):
    t.set_restore_rc(1)
    path = builder.write(builder.base(str(t.volume)), t.tmp / "archive.tar")
    out = t.restore("--import", str(path))
    assert out.returncode == 1
    assert not [n for n in os.listdir(t.bundle) if n.startswith(".runc-ckpt-import")]
    assert not any(c.split()[2:3] == ["delete"] for c in t.runc_calls())


def test_volume_dir_created_for_staging_is_removed_on_refusal(t):
    import shutil
    shutil.rmtree(t.tmp / "volumes" / "vol1")
    a = builder.base(str(t.volume), volume_tar=builder.tar_bytes([builder.f("v", b"data")]))
    a.manifest_override["format_version"] = 2
    _run(t, a, "format version 2")
    assert not (t.tmp / "volumes" / "vol1").exists()


def test_missing_namespace_path_is_named(t):
    a = builder.base(str(t.volume))
    spec = builder.spec(str(t.volume))
    spec["linux"] = {"namespaces": [{"type": "pid"}, {"type": "network", "path": "/var/run/netns/cni-gone"}]}
    a.members[0] = builder.f("spec.dump", json.dumps(spec).encode(), mode=0o600)
    _run(t, a, "/var/run/netns/cni-gone")


def test_sigterm_while_staging_removes_staging(t):
    """A signal mid-import unwinds: one error line, staging removed, nothing applied."""
    import signal
    import subprocess
    import time
    big = builder.tar_bytes([builder.f(f"big{i}", os.urandom(4 << 20)) for i in range(40)])
    path = builder.write(builder.base(str(t.volume), rootfs_diff=big), t.tmp / "archive.tar", compression="none")
    before = snapshot(t.tmp, skip=SKIP)
    proc = subprocess.Popen([t.bin, "--root", str(t.runc_root), "restore", "--import", str(path), "--bundle",
                             str(t.bundle), "-d", "x"], env=t.env, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not [n for d in t.bundle.glob(".runc-ckpt-import-*") for n in os.listdir(d)
                                               if n.startswith(".runc-ckpt-staging")]:
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "interrupted by SIGTERM before runc restore: nothing applied" in err
    assert snapshot(t.tmp, skip=SKIP) == before
    assert not [n for n in os.listdir(t.bundle) if n.startswith(".runc-ckpt")]
