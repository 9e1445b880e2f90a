"""restore --import against a fake runc: what is applied, and how runc is called."""

from __future__ import annotations

import json
import os
import stat

import pytest

from tests.hostile import builder
from tests.hostile.harness import make_target


def _restore_call(t):
    calls = [c for c in t.runc_calls() if " restore " in f" {c} "]
    assert len(calls) == 1, t.runc_calls()
    return calls[0].split()


def test_applies_diff_deletions_volume_config_and_root_mode(tmp_path, runc_ckpt_bin):
    t = make_target(tmp_path, runc_ckpt_bin)
    os.chmod(t.rootfs, 0o755)
    diff = builder.tar_bytes([builder.d("etc"), builder.f("etc/new", b"n", mode=0o4750, uid=12, gid=34),
                              builder.f("counter", b"5\n"), builder.sym("etc/link", "new"),
                              builder.hard("etc/hard", "etc/new")])
    a = builder.base(str(t.volume), rootfs_diff=diff, deleted=["/etc/lower-file"], root_mode=0o555,
                     volume_tar=builder.tar_bytes([builder.d("."), builder.f("./v", b"vol\n")]))
    archive = builder.write(a, tmp_path / "archive.tar", compression="gzip")
    out = t.restore("--import", str(archive), "--pid-file", str(tmp_path / "pid"), "--no-pivot")
    assert out.returncode == 0, out.stderr
    st = os.stat(t.rootfs / "etc" / "new")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (12, 34, 0o4750)
    assert os.readlink(t.rootfs / "etc" / "link") == "new"
    assert os.stat(t.rootfs / "etc" / "hard").st_ino == st.st_ino
    assert not (t.rootfs / "etc" / "lower-file").exists()
    assert (t.rootfs / "etc" / "passwd").exists()
    assert (t.volume / "v").read_text() == "vol\n"
    assert stat.S_IMODE(os.stat(t.rootfs).st_mode) == 0o555
    cfg = json.loads((t.bundle / "config.json").read_text())
    assert cfg["root"]["path"] == "rootfs"
    argv = _restore_call(t)
    assert argv[:3] == ["--root", str(t.runc_root), "restore"]
    assert argv[argv.index("--bundle") + 1] == str(t.bundle)
    assert argv[argv.index("--image-path") + 1].endswith("/checkpoint")
    assert "--detach" in argv and "--no-pivot" in argv
    assert argv[argv.index("--pid-file") + 1] == str(tmp_path / "pid")
    assert argv[-1] == builder.CID
    assert not [n for n in os.listdir(t.bundle) if n.startswith(".runc-ckpt-import")]
    assert not [n for n in os.listdir(t.rootfs) if n.startswith(".runc-ckpt")]
    assert not [n for n in os.listdir(t.volume) if n.startswith(".runc-ckpt")]


def test_existing_bundle_config_and_ignore_flags_and_name(tmp_path, runc_ckpt_bin):
    t = make_target(tmp_path, runc_ckpt_bin)
    (t.volume / "old").write_text("kept")
    (t.bundle / "config.json").write_text(json.dumps(builder.spec(str(t.volume)) | {"root": {"path": "rootfs"}}))
    before = (t.bundle / "config.json").read_text()
    a = builder.base(str(t.volume), volume_tar=builder.tar_bytes([builder.f("v", b"x")]))
    archive = builder.write(a, tmp_path / "archive.tar", compression="none")
    out = t.restore("--import", str(archive), "--ignore-rootfs", "--ignore-volumes", "--name", "other", "--keep",
                    cid=None)
    assert out.returncode == 0, out.stderr
    assert not (t.rootfs / "newfile").exists()
    assert sorted(os.listdir(t.volume)) == ["old"]
    assert (t.bundle / "config.json").read_text() == before
    assert _restore_call(t)[-1] == "other"
    kept = [n for n in os.listdir(t.bundle) if n.startswith(".runc-ckpt-import")]
    assert len(kept) == 1 and (t.bundle / kept[0] / "checkpoint" / "inventory.img").exists()


def test_podman_bind_sources_are_recreated_under_the_bundle(tmp_path, runc_ckpt_bin):
    t = make_target(tmp_path, runc_ckpt_bin)
    spec = builder.spec(str(t.volume))
    spec["hostname"] = "c1host"
    gone = "/var/lib/containers/storage/overlay-containers/abc/userdata"
    for dest, name in (("/etc/hosts", "hosts"), ("/etc/hostname", "hostname"), ("/dev/shm", "shm"),
                       ("/run/.containerenv", ".containerenv")):
        spec["mounts"].append({"destination": dest, "type": "bind", "source": f"{gone}/{name}",
                               "options": ["bind"]})
    a = builder.base(str(t.volume))
    a.members[0] = builder.f("spec.dump", json.dumps(spec).encode(), mode=0o600)
    a.add("devshm-checkpoint.tar", builder.tar_bytes([builder.d("."), builder.f("shmfile", b"shm!")]))
    archive = builder.write(a, tmp_path / "archive.tar")
    out = t.restore("--import", str(archive), "--print-stats")
    assert out.returncode == 0, out.stderr
    cfg = json.loads((t.bundle / "config.json").read_text())
    sources = {m["destination"]: m["source"] for m in cfg["mounts"] if m.get("type") == "bind"}
    binds = t.bundle / ".runc-ckpt-binds"
    assert sources["/etc/hosts"] == str(binds / "hosts")
    assert (binds / "hostname").read_text() == "c1host\n"
    assert (binds / "shm" / "shmfile").read_text() == "shm!"
    assert out.stderr.count("bind mount") == 4
    stats = json.loads(out.stdout)
    assert stats["container_statistics"][0]["Id"] == builder.CID
    assert set(stats["container_statistics"][0]["criu_statistics"]) == {
        "pages_compared", "pages_skipped_cow", "forking_time", "restore_time", "pages_restored"}
    assert "podman_restore_duration" in stats


def test_import_previous_lays_pre_checkpoint_beside(tmp_path, runc_ckpt_bin):
    t = make_target(tmp_path, runc_ckpt_bin)
    pre = builder.Archive(manifest=False)
    pre.add("pre-checkpoint/inventory.img", b"pre")
    pre.add("pre-checkpoint/pages-1.img", b"\0" * 4096)
    pre_path = builder.write(pre, tmp_path / "pre.tar")
    a = builder.base(str(t.volume))
    a.members.insert(4, builder.sym("checkpoint/parent", "../pre-checkpoint"))
    archive = builder.write(a, tmp_path / "archive.tar")
    out = t.restore("--import", str(archive), "--import-previous", str(pre_path), "--keep")
    assert out.returncode == 0, out.stderr
    image_path = _restore_call(t)[_restore_call(t).index("--image-path") + 1]
    assert os.path.isfile(os.path.join(image_path, "parent", "pages-1.img"))


def test_full_rootfs_archive_restores_into_an_empty_rootfs(tmp_path, runc_ckpt_bin):
    t = make_target(tmp_path, runc_ckpt_bin)
    for p in sorted(t.rootfs.rglob("*"), reverse=True):
        p.rmdir() if p.is_dir() else p.unlink()
    full = builder.tar_bytes([builder.d("bin"), builder.f("bin/sh", b"#!", mode=0o755), builder.d("etc")])
    a = builder.base(str(t.volume), rootfs_diff=full)
    a.manifest_override["rootfs"] = {"kind": "full", "root_mode": 0o751}
    out = t.restore("--import", str(builder.write(a, tmp_path / "archive.tar")))
    assert out.returncode == 0, out.stderr
    assert (t.rootfs / "bin" / "sh").read_bytes() == b"#!"
    assert stat.S_IMODE(os.stat(t.rootfs).st_mode) == 0o751


def _rounds_archive(volume: str, links: dict[str, str], rounds: tuple[int, ...] = (1, 2)) -> builder.Archive:
    """A stream's layout after memory pre-copy rounds: pre-checkpoint/, pre-checkpoint.N/, checkpoint/,
    with the given `parent` links (member dir -> link target)."""
    a = builder.base(volume)
    for d in ["pre-checkpoint", *(f"pre-checkpoint.{n}" for n in rounds)]:
        a.members.insert(3, builder.f(f"{d}/pages-1.img", b"\0" * 4096))
        a.members.insert(3, builder.f(f"{d}/inventory.img", d.encode()))
    for d, target in links.items():
        a.members.insert(3, builder.sym(f"{d}/parent", target))
    return a


def test_pre_copy_rounds_are_staged_as_a_chain(tmp_path, runc_ckpt_bin):
    t = make_target(tmp_path, runc_ckpt_bin)
    a = _rounds_archive(str(t.volume), {"pre-checkpoint.1": "../pre-checkpoint", "pre-checkpoint.2": "../pre-checkpoint.1",
                                        "checkpoint": "../pre-checkpoint.2"})
    out = t.restore("--import", str(builder.write(a, tmp_path / "archive.tar")), "--keep")
    assert out.returncode == 0, out.stderr
    image_path = _restore_call(t)[_restore_call(t).index("--image-path") + 1]
    for up, name in (("parent", b"pre-checkpoint.2"), ("parent/parent", b"pre-checkpoint.1"),
                     ("parent/parent/parent", b"pre-checkpoint")):
        with open(os.path.join(image_path, up, "inventory.img"), "rb") as f:
            assert f.read() == name


@pytest.mark.parametrize(("links", "rounds", "error"), [
    # the dump on an older round: it would restore pages the workload had overwritten since
    ({"pre-checkpoint.1": "../pre-checkpoint", "pre-checkpoint.2": "../pre-checkpoint.1",
      "checkpoint": "../pre-checkpoint.1"}, (1, 2), "not a chain its checkpoint/ builds on"),
    ({"pre-checkpoint.2": "../pre-checkpoint.1", "checkpoint": "../pre-checkpoint.2"}, (2,), "not a chain"),
    ({"pre-checkpoint.1": "../pre-checkpoint", "pre-checkpoint.2": "../pre-checkpoint.1"}, (1, 2), "not a chain"),
    # a round skipping one, a loop, a link out of the archive
    ({"pre-checkpoint.2": "../pre-checkpoint", "checkpoint": "../pre-checkpoint.2"}, (1, 2), "must point to"),
    ({"pre-checkpoint.1": "../pre-checkpoint.1", "checkpoint": "../pre-checkpoint.1"}, (1,), "must point to"),
    ({"pre-checkpoint.1": "/etc", "checkpoint": "../pre-checkpoint.1"}, (1,), "must point to"),
    ({"pre-checkpoint.5": "../pre-checkpoint.4", "checkpoint": "../pre-checkpoint"}, (5,), "not a regular file"),
])
def test_a_broken_chain_of_rounds_is_refused_before_anything_is_applied(tmp_path, runc_ckpt_bin, links, rounds,
                                                                        error):
    t = make_target(tmp_path, runc_ckpt_bin)
    a = _rounds_archive(str(t.volume), links, rounds)
    out = t.restore("--import", str(builder.write(a, tmp_path / "archive.tar")))
    assert out.returncode != 0 and error in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (t.rootfs / "newfile").exists()
    assert not [c for c in t.runc_calls() if " restore " in f" {c} "]
