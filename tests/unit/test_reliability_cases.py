"""Issue 11's measured failures, each reproduced with a fake runc and fault injection (RUNC_CKPT_FAULT).

Real runc/CRIU versions of the concurrency and kill cases are in
tests/integration/test_reliability_real.py; these run in seconds and reach
the phases a kernel cannot (pre-dump chains).
"""

from __future__ import annotations

import json
import os
import signal
import tarfile
import time

import pytest

from tests.hostile.harness import snapshot
from tests.reliability_env import leftovers, make_host, signal_paused, wait_stopped


@pytest.fixture
def h(tmp_path, runc_ckpt_bin):
    return make_host(tmp_path, runc_ckpt_bin)


def exported(h, cid="web", name="a.tar", *extra):
    """A container `cid` from bundle `src`, checkpointed -R --export into an archive; returns its path."""
    src = h.tmp / "src"
    if not src.exists():
        h.bundle("src")
    h.container(cid, src)
    out = h.run("checkpoint", "-R", "--export", str(h.tmp / name), *extra, cid)
    assert out.returncode == 0, out.stderr
    return h.tmp / name


# 1 ------------------------------------------------------------------------------------------------


def test_1_a_concurrent_checkpoint_keeps_its_images(h):
    b = h.bundle()
    h.container("web", b)
    h.knob("checkpoint-sleep", "1.5")
    first = h.spawn("checkpoint", "-R", "--export", str(h.tmp / "A.tar"), "web")
    time.sleep(0.5)
    second = h.run("checkpoint", "-R", "--latest")            # --latest: its images go to the state dir
    first.communicate(timeout=60)
    assert (first.returncode, second.returncode) == (0, 0), second.stderr
    # The second call's images survive the first call's tidy-up.
    assert (h.state / "web" / "checkpoint" / "inventory.img").is_file()
    assert (h.tmp / "A.tar").is_file()


def test_1_a_waiting_caller_gives_up_naming_the_holder(tmp_path, runc_ckpt_bin):
    h = make_host(tmp_path, runc_ckpt_bin)
    (tmp_path / "runc-ckpt.yaml").write_text((tmp_path / "runc-ckpt.yaml").read_text().replace(
        "lock_timeout: 30", "lock_timeout: 0.3"))
    h.container("web", h.bundle())
    h.knob("checkpoint-sleep", "3")
    first = h.spawn("checkpoint", "-R", "--latest")
    time.sleep(0.8)
    second = h.run("checkpoint", "-R", "--latest")
    first.communicate(timeout=60)
    assert second.returncode == 1
    assert f"container web is busy: runc-ckpt pid {first.pid} (checkpoint, since" in second.stderr
    assert "waited 0.3s (lock_timeout in runc-ckpt.yaml)" in second.stderr
    assert second.stderr.count("level=error") == 1


# 2 ------------------------------------------------------------------------------------------------


def test_2_two_restores_of_one_archive_under_one_id_have_one_winner(h):
    archive = exported(h)
    h.forget("web")
    p, q = h.bundle("P"), h.bundle("Q")
    before = {b: snapshot(b / "rootfs") for b in (p, q)}
    h.knob("restore-sleep", "0.5")
    procs = {b: h.spawn("restore", "--import", str(archive), "--bundle", str(b), "-d", "web") for b in (p, q)}
    codes = {b: (proc.wait(60), proc.stderr.read()) for b, proc in procs.items()}
    winners = [b for b, (rc, _) in codes.items() if rc == 0]
    assert len(winners) == 1, codes
    loser = (set(codes) - set(winners)).pop()
    assert "container web already exists" in codes[loser][1]
    assert snapshot(loser / "rootfs") == before[loser]          # the loser's bundle was never touched
    assert json.loads(h.state_file("web").read_text())["bundle"] == str(winners[0])
    assert not leftovers(p, q)


# 3 ------------------------------------------------------------------------------------------------


def test_3_restore_never_deletes_a_container_it_did_not_create(h):
    archive = exported(h)
    h.forget("web")
    b = h.bundle()
    before = snapshot(b)
    h.knob("restore-exists", str(h.tmp / "other-bundle"))     # a `run web` wins the race for the id
    out = h.run("restore", "--import", str(archive), "--bundle", str(b), "-d", "web")
    assert out.returncode == 1
    assert not h.calls("delete"), "runc delete would kill the other container"
    assert h.exists("web")
    assert "exists that this restore did not create: it is left alone" in out.stderr
    assert snapshot(b) == before


# 4 ------------------------------------------------------------------------------------------------


def test_4_a_killed_export_leaves_a_temp_file_the_next_export_sweeps(h):
    h.container("web", h.bundle())
    (h.tmp / "out").mkdir()
    killed = h.run("checkpoint", "-R", "--export", str(h.tmp / "out" / "A.tar"), "web", fault="export-write:kill")
    assert killed.returncode == -signal.SIGKILL
    assert [n for n in os.listdir(h.tmp / "out") if n.startswith(".A.tar.runc-ckpt-")]
    out = h.run("checkpoint", "-R", "--export", str(h.tmp / "out" / "B.tar"), "web")
    assert out.returncode == 0, out.stderr
    assert sorted(os.listdir(h.tmp / "out")) == ["B.tar"]


def test_4_a_kill_just_before_the_rename_leaves_the_old_archive(h):
    archive = exported(h, name="A.tar")
    old = archive.read_bytes()
    killed = h.run("checkpoint", "-R", "--export", str(archive), "web", fault="rename:kill")
    assert killed.returncode == -signal.SIGKILL
    assert archive.read_bytes() == old


# 5 ------------------------------------------------------------------------------------------------


def test_5_images_of_a_killed_dump_are_recovered_by_the_next_call(h):
    h.container("web", h.bundle())
    h.knob("checkpoint-sleep", "1")
    killed = h.run("checkpoint", "--latest", fault="dump:kill")   # runc runs on and finishes the dump
    assert killed.returncode == -signal.SIGKILL
    h.knob("checkpoint-sleep", None)
    h.knob("checkpoint-rc", "1")                              # the next call fails, after recovering
    h.container("web", h.bundle("b2"))
    out = h.run("checkpoint", "-R", "--latest")
    assert "recovered the images of an interrupted checkpoint into" in out.stderr
    assert (h.state / "web" / "checkpoint" / "inventory.img").is_file()
    assert not [n for n in os.listdir(h.state / "web") if n.startswith(".checkpoint.new-")]


def test_5_an_incomplete_stranded_dump_is_removed_and_said(h):
    h.container("web", h.bundle())
    stranded = h.state / "web" / ".checkpoint.new-999999"
    stranded.mkdir(parents=True)
    (stranded / "pages-1.img").write_bytes(b"x")
    out = h.run("checkpoint", "-R", "--latest")
    assert out.returncode == 0, out.stderr
    assert "removed" in out.stderr and "incomplete" in out.stderr
    assert not stranded.exists()


# 6 ------------------------------------------------------------------------------------------------


def test_6_a_kill_while_staging_leaves_nothing_in_the_rootfs_and_the_next_restore_sweeps(h):
    archive = exported(h)
    h.forget("web")
    b = h.bundle()
    before = snapshot(b / "rootfs")
    killed = h.run("restore", "--import", str(archive), "--bundle", str(b), "-d", "web", fault="staging:kill")
    assert killed.returncode == -signal.SIGKILL
    assert snapshot(b / "rootfs") == before                  # staged outside the container's rootfs
    assert [n for n in os.listdir(b) if n.startswith(".runc-ckpt-import-")]
    out = h.run("restore", "--import", str(archive), "--bundle", str(b), "-d", "web")
    assert out.returncode == 0, out.stderr
    assert "left by a killed restore --import" in out.stderr
    assert not leftovers(b)


def test_6_staging_inside_a_separately_mounted_rootfs_is_swept_by_the_next_checkpoint(h):
    import subprocess
    archive = exported(h)
    h.forget("web")
    b = h.bundle()
    subprocess.run(["cp", "-a", str(b / "rootfs"), str(h.tmp / "image")], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(b / "rootfs")], check=True)
    try:
        subprocess.run(["cp", "-a", f"{h.tmp / 'image'}/.", str(b / "rootfs")], check=True)
        killed = h.run("restore", "--import", str(archive), "--bundle", str(b), "-d", "web",
                       fault="staging:kill")
        assert killed.returncode == -signal.SIGKILL
        assert [n for n in os.listdir(b / "rootfs") if n.startswith(".runc-ckpt-staging-")]
        h.container("web", b)                                 # someone runs the bundle anyway
        out = h.run("checkpoint", "-R", "--export", str(h.tmp / "next.tar"), "web")
        assert out.returncode == 0, out.stderr
        assert not [n for n in os.listdir(b / "rootfs") if n.startswith(".runc-ckpt")]
        with tarfile.open(h.tmp / "next.tar") as t:
            inner = tarfile.open(fileobj=t.extractfile("rootfs-diff.tar"))
            assert not [n for n in inner.getnames() if ".runc-ckpt" in n]
    finally:
        subprocess.run(["umount", "-l", str(b / "rootfs")], check=False)


# 7 ------------------------------------------------------------------------------------------------


def test_7_sigterm_while_runc_restores_says_what_happened_and_leaves_nothing(h):
    archive = exported(h)
    h.forget("web")
    b = h.bundle()
    h.knob("restore-sleep", "0.5")
    proc = h.spawn("restore", "--import", str(archive), "--bundle", str(b), "-d", "web", fault="runc-restore:pause")
    wait_stopped(proc)
    rc, err = signal_paused(proc, signal.SIGTERM)
    assert rc == 128 + signal.SIGTERM
    assert "interrupted by SIGTERM while runc restored web; runc finished and the container is running" in err
    assert err.count("level=error") == 1
    assert h.exists("web")
    assert not leftovers(b)


# 8 ------------------------------------------------------------------------------------------------


def in_place_archive(h, n=200):
    """An archive whose (full, plain-directory) rootfs replaces many files."""
    src = h.bundle("src", files=n)
    h.container("web", src)
    for i in range(n):
        (src / "rootfs" / f"file{i}").write_text(f"changed {i}\n")
    (src / "rootfs" / "etc" / "lower-file").unlink()
    out = h.run("checkpoint", "-R", "--export", str(h.tmp / "in-place.tar"), "web")
    assert out.returncode == 0, out.stderr
    h.forget("web")
    return h.tmp / "in-place.tar"


def test_8_sigterm_while_applying_rolls_everything_back(h):
    archive = in_place_archive(h)
    b = h.bundle("target", files=200)
    before = snapshot(b)
    proc = h.spawn("restore", "--import", str(archive), "--bundle", str(b), "-d", "web", fault="apply:pause")
    wait_stopped(proc)
    rc, err = signal_paused(proc, signal.SIGTERM)
    assert rc == 128 + signal.SIGTERM, err
    assert "nothing applied, the bundle" in err
    assert snapshot(b) == before
    assert not h.calls("restore")


def test_8_a_kill_while_applying_is_rolled_back_by_the_next_call(h):
    archive = in_place_archive(h)
    b = h.bundle("target", files=200)
    before = snapshot(b)
    killed = h.run("restore", "--import", str(archive), "--bundle", str(b), "-d", "web", fault="apply:kill")
    assert killed.returncode == -signal.SIGKILL
    assert snapshot(b) != before                               # half applied...
    h.knob("restore-rc", "1")
    out = h.run("restore", "--import", str(archive), "--bundle", str(b), "-d", "web")
    assert "rolled back a restore --import that was killed while applying" in out.stderr
    assert snapshot(b) == before                               # ...and put back (the retry failed too)
    h.knob("restore-rc", None)
    out = h.run("restore", "--import", str(archive), "--bundle", str(b), "-d", "web")
    assert out.returncode == 0, out.stderr
    assert (b / "rootfs" / "file7").read_text() == "changed 7\n"
    assert not leftovers(b)


# 9 ------------------------------------------------------------------------------------------------


def test_9_a_bad_id_is_refused_before_anything_is_applied(h):
    archive = exported(h)
    b = h.bundle("B")
    before = snapshot(b)
    out = h.run("restore", "--import", str(archive), "--bundle", str(b), "-d", ".")
    assert out.returncode == 1
    assert "invalid container id '.'" in out.stderr
    assert snapshot(b) == before
    assert not h.calls("restore")


# 10 -----------------------------------------------------------------------------------------------


def test_10_a_long_archive_name_is_refused_before_the_container_is_touched(h):
    h.container("web", h.bundle())
    name = "x" * 248
    out = h.run("checkpoint", "--export", str(h.tmp / name), "web")
    assert out.returncode == 1
    assert "with runc-ckpt's temp name" in out.stderr and "exceeds 255" in out.stderr
    assert not h.calls("checkpoint") and h.exists("web")


# 11 -----------------------------------------------------------------------------------------------


def test_11_a_failed_runc_restore_keeps_its_log_and_can_be_retried(h):
    archive = exported(h)
    h.forget("web")
    b = h.bundle()
    before = snapshot(b)
    h.knob("restore-rc", "1")
    out = h.run("restore", "--import", str(archive), "--bundle", str(b), "-d", "web")
    assert out.returncode == 1
    log = h.state / "web" / "restore-work" / "restore.log"
    assert f"CRIU's log: {log}" in out.stderr and "fake failure" in log.read_text()
    assert "the bundle, rootfs and volumes are as they were" in out.stderr
    # Our account of the aftermath is a line in runc's log format, not free-form text an engine cannot parse.
    (ours,) = [line for line in out.stderr.splitlines() if "restore --import of web failed" in line]
    assert ours.startswith("time=") and " level=warning msg=" in ours
    assert snapshot(b) == before
    h.knob("restore-rc", None)
    out = h.run("restore", "--import", str(archive), "--bundle", str(b), "-d", "web")
    assert out.returncode == 0, out.stderr
    assert not log.exists()


# 12 -----------------------------------------------------------------------------------------------


def test_12_with_previous_export_from_a_state_dir_chain_round_trips(h):
    h.container("web", h.bundle("src"))
    out = h.run("checkpoint", "--pre-checkpoint", "--export", str(h.tmp / "pre.tar"), "web")
    assert out.returncode == 0, out.stderr
    assert (h.state / "web" / "pre-checkpoint.1").is_dir()
    out = h.run("checkpoint", "--with-previous", "--export", str(h.tmp / "full.tar"), "web")
    assert out.returncode == 0, out.stderr
    with tarfile.open(h.tmp / "full.tar") as t:
        assert t.getmember("checkpoint/parent").linkname == "../pre-checkpoint"
    for archive in ("pre.tar", "full.tar"):
        info = h.run("inspect", str(h.tmp / archive))
        assert info.returncode == 0, info.stderr
    b = h.bundle()
    out = h.run("restore", "--import", str(h.tmp / "full.tar"), "--import-previous", str(h.tmp / "pre.tar"),
                "--bundle", str(b), "-d", "web")
    assert out.returncode == 0, out.stderr       # the fake runc checks checkpoint/parent/inventory.img
    assert h.exists("web")


def test_12_auto_export_after_with_previous_restores_alone(tmp_path, runc_ckpt_bin):
    exports = tmp_path / "exports"
    exports.mkdir()
    h = make_host(tmp_path, runc_ckpt_bin, f"export_dir: {exports}\nexport_roots: [{exports}]\n")
    h.container("web", h.bundle("src"))
    assert h.run("checkpoint", "--pre-checkpoint", "web").returncode == 0
    out = h.run("checkpoint", "--with-previous", "web")
    assert out.returncode == 0, out.stderr
    (archive,) = exports.iterdir()
    with tarfile.open(archive) as t:
        names = t.getnames()
        assert "pre-checkpoint/inventory.img" in names and t.getmember("checkpoint/parent").linkname == \
            "../pre-checkpoint"
    out = h.run("restore", "--import", str(archive), "--bundle", str(h.bundle()), "-d", "web")
    assert out.returncode == 0, out.stderr


# the archived spec is untrusted ------------------------------------------------------------------


@pytest.mark.parametrize("change, said", [
    (lambda s: s["mounts"].append({"destination": "/host", "type": "bind", "source": "/etc",
                                   "options": ["rbind"]}), "bind mount of host path /etc"),
    (lambda s: s.update(hooks={"prestart": [{"path": "/bin/sh"}]}), "hooks.prestart would run host programs"),
    (lambda s: s.setdefault("linux", {}).update(devices=[{"path": "/dev/sda", "type": "b", "major": 8,
                                                          "minor": 0}]), "linux.devices"),
    (lambda s: s.setdefault("linux", {}).update(namespaces=[{"type": "network", "path": "/proc/self/ns/net"}]),
     "joins the host's network namespace /proc/self/ns/net"),
    (lambda s: s["process"].update(capabilities={"bounding": ["CAP_SYS_ADMIN"]}),
     "added capabilities CAP_SYS_ADMIN"),
    (lambda s: s["mounts"].append({"destination": "/disk", "type": "ext4", "source": "/dev/sda1"}),
     "mount of /dev/sda1 (type ext4)"),
])
def test_an_archived_spec_reaching_the_host_needs_the_trust_flag(h, change, said):
    src = h.bundle("src")
    spec = json.loads((src / "config.json").read_text())
    change(spec)
    (src / "config.json").write_text(json.dumps(spec))
    archive = exported(h)
    h.forget("web")
    b = h.bundle()
    (b / "config.json").unlink()
    before = snapshot(b)
    out = h.run("restore", "--import", str(archive), "--bundle", str(b), "-d", "web")
    assert out.returncode == 1
    assert said in out.stderr and "--trust-archive-spec" in out.stderr
    assert snapshot(b) == before and not h.calls("restore")
    trusted = h.run("restore", "--import", str(archive), "--bundle", str(b), "-d", "--trust-archive-spec", "web")
    assert trusted.returncode == 0, trusted.stderr


def test_5_images_a_killed_dump_stranded_are_recovered_even_when_the_container_is_gone(h):
    h.container("web", h.bundle())
    h.knob("checkpoint-sleep", "0.5")
    assert h.run("checkpoint", "--latest", fault="dump:kill").returncode == -signal.SIGKILL
    time.sleep(1)                                             # runc finished: the container is stopped
    assert not h.exists("web")
    out = h.run("checkpoint", "web")
    assert out.returncode == 1 and "container does not exist" in out.stderr
    assert "recovered the images of an interrupted checkpoint into" in out.stderr
    assert (h.state / "web" / "checkpoint" / "inventory.img").is_file()
