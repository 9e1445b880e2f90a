"""`runc-ckpt checkpoint` through the installed front end, on real runc + CRIU and busybox containers."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import zstandard

from tests.integration.conftest import COUNTER, mounted, wait_for


@dataclass
class Ckpt:
    """Runs the front end with a private config (state dir and volume roots under tmp)."""

    bin: str
    root: Path
    state_dir: Path
    env: dict[str, str]
    cwd: Path  # runc's default image dir is ./checkpoint: never the checkout's

    def __call__(self, *args: str, globals_: tuple[str, ...] = (), command: str = "checkpoint",
                 cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.bin, "--root", str(self.root), *globals_, command, *args],
                              capture_output=True, text=True, env=self.env, stdin=subprocess.DEVNULL,
                              timeout=120, cwd=cwd or self.cwd, check=False)


@pytest.fixture
def ckpt(runc_ckpt_bin, containers, tmp_path) -> Ckpt:
    state = tmp_path / "state"
    cfg = tmp_path / "runc-ckpt.yaml"
    cfg.write_text(f"state_dir: {state}\nvolume_roots: [{tmp_path / 'volumes'}]\n")
    env = {**os.environ, "RUNC_CKPT_CONFIG": str(cfg)}
    env.pop("RUNC_CKPT_RUNC", None)
    return Ckpt(runc_ckpt_bin, containers.root, state, env, tmp_path)


def started(make_bundle, containers, **kw):
    b = make_bundle(**kw)
    cid = containers.run(b)
    wait_for(lambda: b.counter() > 2, what="counter to start")
    return b, cid


def still_counting(b) -> None:
    before = b.counter()
    wait_for(lambda: b.counter() > before + 1, what="counter to go on (container still running)")


def one_error_line(log: Path) -> str:
    lines = log.read_text().splitlines() if log.exists() else []
    errors = [json.loads(ln) for ln in lines if json.loads(ln)["level"] == "error"]
    assert len(lines) == 1 and len(errors) == 1, lines
    return errors[0]["msg"]


def test_plain_checkpoint_and_restore_from_the_bundle_as_with_runc(make_bundle, containers, ckpt):
    b, cid = started(make_bundle, containers)
    out = ckpt(cid, cwd=b.path)
    assert out.returncode == 0, out.stderr
    images = b.path / "checkpoint"                   # runc's default: ./checkpoint, work files beside
    assert (images / "inventory.img").exists() and (images / "stats-dump").exists()
    assert not ckpt.state_dir.joinpath(cid).exists()
    assert containers.status(cid) is None            # runc removed the checkpointed container
    before = b.counter()
    out = ckpt("-d", cid, command="restore", cwd=b.path)
    assert out.returncode == 0, out.stderr
    wait_for(lambda: b.counter() > before + 2, what="counter to continue after restore")


def test_plain_restore_finds_a_state_dir_checkpoint(make_bundle, containers, ckpt):
    b, cid = started(make_bundle, containers)
    out = ckpt("--latest", cwd=b.path)               # one of our features: the state dir
    assert out.returncode == 0, out.stderr
    assert (ckpt.state_dir / cid / "checkpoint" / "inventory.img").exists()
    assert not (b.path / "checkpoint").exists()
    before = b.counter()
    out = ckpt("-d", cid, command="restore", cwd=b.path)
    assert out.returncode == 0, out.stderr
    wait_for(lambda: b.counter() > before + 2, what="counter to continue after restore")
    assert not (b.path / "checkpoint").exists()     # runc's default dir was not used (nor made)


def test_podman_shaped_argv_does_what_runc_does(make_bundle, containers, ckpt):
    b, cid = started(make_bundle, containers)
    out = ckpt("--image-path", f"{b.path}/checkpoint", "--work-path", str(b.path), "--leave-running",
               "--leave-running", cid)
    assert out.returncode == 0, out.stderr
    assert (b.path / "checkpoint" / "inventory.img").exists()
    assert (b.path / "stats-dump").exists() and (b.path / "dump.log").exists()
    assert containers.status(cid) == "running"
    still_counting(b)
    assert not ckpt.state_dir.joinpath(cid).exists()


def test_export_archive_members(make_bundle, containers, ckpt, tmp_path):
    script = "echo vol-data > /vol1/v; echo new > /etc/new-file; rm /etc/lower-file; " + COUNTER
    b, cid = started(make_bundle, containers, args=["sh", "-c", script], volumes={"vol1": "/vol1"})
    archive = tmp_path / "out" / "ctr.tar.zst"
    archive.parent.mkdir()
    out = ckpt("-e", str(archive), "--print-stats", cid)
    assert out.returncode == 0, out.stderr
    assert containers.status(cid) is None
    data = zstandard.ZstdDecompressor().stream_reader(archive.open("rb")).read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        names = tf.getnames()
        config_dump = json.loads(tf.extractfile("config.dump").read())
        spec = json.loads(tf.extractfile("spec.dump").read())
        diff = tarfile.open(fileobj=io.BytesIO(tf.extractfile("rootfs-diff.tar").read()))
        vol = tarfile.open(fileobj=io.BytesIO(tf.extractfile("volumes/vol1.tar").read()))
        deleted = json.loads(tf.extractfile("deleted.files").read())
        diff_names = diff.getnames()
        vol_names = vol.getnames()
    assert "checkpoint/inventory.img" in names and "stats-dump" in names
    assert names[-1] == "runc-ckpt.manifest.json"
    assert config_dump["id"] == cid and config_dump["runtime"] == "runc-ckpt" and config_dump["restored"] is False
    assert spec == b.config()
    assert any(n.endswith("etc/new-file") for n in diff_names)
    assert any(n.endswith("v") for n in vol_names)
    assert any(d.endswith("etc/lower-file") for d in deleted)
    assert (archive.stat().st_mode & 0o777) == 0o600
    # Without --keep what we created for the archive is gone.
    assert not (ckpt.state_dir / cid / "checkpoint").exists()
    assert not (ckpt.state_dir / cid / "work" / "stats-dump").exists()
    assert json.loads(out.stdout)["container_statistics"][0]["Id"] == cid


def test_export_with_keep_keeps_images(make_bundle, containers, ckpt, tmp_path):
    b, cid = started(make_bundle, containers)
    out = ckpt("-e", str(tmp_path / "x.tar"), "-c", "none", "--keep", "-R", cid)
    assert out.returncode == 0, out.stderr
    assert (ckpt.state_dir / cid / "checkpoint" / "inventory.img").exists()
    assert (ckpt.state_dir / cid / "work" / "dump.log").exists()
    with tarfile.open(tmp_path / "x.tar") as tf:        # --compress none: a plain tar
        assert "checkpoint/inventory.img" in tf.getnames()
    assert containers.status(cid) == "running"


@pytest.mark.parametrize("argv", [["--pre-checkpoint"], ["-P", "--leave-running"]])
def test_missing_memory_tracking_for_real(make_bundle, containers, ckpt, argv):
    b, cid = started(make_bundle, containers)
    out = ckpt(*argv, cid)
    assert out.returncode == 1
    assert "memory tracking" in out.stderr and out.stderr.count("\n") == 1
    assert containers.status(cid) == "running"
    still_counting(b)
    assert not (ckpt.state_dir / cid).exists()
    cache = json.loads((ckpt.state_dir / "criu-features.json").read_text())
    assert cache["key"]["feature"] == "mem_dirty_track" and cache["value"]["supported"] is False


def test_podman_pre_dump_shape_fails_cleanly_for_real(make_bundle, containers, ckpt, tmp_path):
    b, cid = started(make_bundle, containers)
    log = tmp_path / "log.json"
    out = ckpt("--image-path", f"{b.path}/pre-checkpoint", "--work-path", str(b.path), "--leave-running",
               "--pre-dump", cid, globals_=("--log-format=json", "--log", str(log)))
    assert out.returncode == 1
    assert "memory tracking" in one_error_line(log)
    assert containers.status(cid) == "running"
    assert not (b.path / "pre-checkpoint").exists()


def _bad_cases(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    return {
        "unknown compress": (["-c", "lz4", "-e", str(tmp_path / "x.tar")], "invalid value"),
        "export into missing dir": (["-e", str(tmp_path / "missing" / "x.tar")], "does not exist"),
        "export into unwritable place": (["-e", "/proc/x.tar"], "cannot write"),
        "with-previous without pre-checkpoint": (["--with-previous"], "no pre-checkpoint"),
    }


@pytest.mark.parametrize("case", ["unknown compress", "export into missing dir", "export into unwritable place",
                                  "with-previous without pre-checkpoint"])
def test_bad_flags_leave_the_container_running(make_bundle, containers, ckpt, tmp_path, case):
    _, cid = started(make_bundle, containers)
    argv, words = _bad_cases(tmp_path)[case]
    log = tmp_path / "log.json"
    out = ckpt(*argv, cid, globals_=("--log-format", "json", "--log", str(log)))
    assert out.returncode == 1
    assert words in one_error_line(log)
    assert containers.status(cid) == "running"
    assert not (ckpt.state_dir / cid).exists()
    assert not (tmp_path / "x.tar").exists()


@pytest.mark.parametrize("config_text, words", [
    ("{ this is not json", "not valid JSON"),
    (None, "process: 'cwd' is a required property"),
])
def test_malformed_config_json_for_real(make_bundle, containers, ckpt, tmp_path, config_text, words):
    b, cid = started(make_bundle, containers)
    if config_text is None:
        cfg = b.config()
        del cfg["process"]["cwd"]
        config_text = json.dumps(cfg)
    b.config_path.write_text(config_text)
    log = tmp_path / "log.json"
    out = ckpt("-e", str(tmp_path / "x.tar"), cid, globals_=("--log-format", "json", "--log", str(log)))
    assert out.returncode == 1
    msg = one_error_line(log)
    assert words in msg and str(b.config_path) in msg
    assert containers.status(cid) == "running"
    assert not (tmp_path / "x.tar").exists() and not (ckpt.state_dir / cid).exists()


def test_missing_and_stopped_containers_for_real(make_bundle, containers, ckpt, tmp_path):
    log = tmp_path / "log.json"
    out = ckpt("ghost", globals_=("--log-format", "json", "--log", str(log)))
    assert out.returncode == 1 and one_error_line(log) == "container does not exist"
    b = make_bundle(args=["true"])
    cid = containers.run(b)
    wait_for(lambda: containers.status(cid) == "stopped", what="container to stop")
    log.unlink()
    out = ckpt(cid, globals_=("--log-format", "json", "--log", str(log)))
    assert out.returncode == 1 and one_error_line(log) == "Container cannot be checkpointed in stopped state"


def test_criu_failure_leaves_one_error_line_and_the_container_running(make_bundle, containers, ckpt, tmp_path):
    b = make_bundle()
    cid = "hostfile-stdio"
    containers.ids.append(cid)
    with open(tmp_path / "host-out", "w") as host:   # CRIU cannot dump a host file as stdio
        subprocess.run(["runc", "--root", str(containers.root), "run", "-d", "--bundle", str(b.path), cid],
                       stdin=subprocess.DEVNULL, stdout=host, stderr=host, check=True)
    wait_for(lambda: b.counter() > 2, what="counter to start")
    log = tmp_path / "log.json"
    out = ckpt(cid, globals_=("--log-format", "json", "--log", str(log)))
    assert out.returncode == 1
    msg = one_error_line(log)
    work_log = ckpt.cwd / "checkpoint" / "dump.log"
    # runc's own message ("log file: dump.log", relative to a directory it does not name), with what it
    # lacks in parentheses, in the one error line.
    assert msg.startswith("criu failed: ") and "log file: dump.log (runc-ckpt: " in msg
    assert f"CRIU's log is {work_log}" in msg and "the container is running" in msg and work_log.exists()
    assert "runc also said: container still running" in msg
    assert "runc-ckpt" not in out.stderr             # runc's fatal() echo only, no line of ours
    assert containers.status(cid) == "running"
    assert not ckpt.state_dir.exists()


def test_export_with_several_containers_is_refused_for_real(make_bundle, containers, ckpt, tmp_path):
    _, a = started(make_bundle, containers)
    _, b = started(make_bundle, containers)
    out = ckpt("--all", "-e", str(tmp_path / "x.tar"))
    assert out.returncode == 1 and "one container" in out.stderr
    assert containers.status(a) == containers.status(b) == "running"
    assert not (tmp_path / "x.tar").exists()


def test_all_and_latest_with_two_containers(make_bundle, containers, ckpt):
    _, first = started(make_bundle, containers)
    time.sleep(0.05)
    _, second = started(make_bundle, containers)
    out = ckpt("--latest", "-R")
    assert out.returncode == 0, out.stderr
    assert (ckpt.state_dir / second / "checkpoint" / "inventory.img").exists()
    assert not (ckpt.state_dir / first).exists()
    out = ckpt("--all", "--leave-running", "--print-stats")
    assert out.returncode == 0, out.stderr
    stats = json.loads(out.stdout)
    assert sorted(c["Id"] for c in stats["container_statistics"]) == sorted([first, second])
    for cid in (first, second):
        assert (ckpt.state_dir / cid / "checkpoint" / "inventory.img").exists()
        assert containers.status(cid) == "running"


def test_print_stats_with_real_criu_numbers(make_bundle, containers, ckpt):
    _, cid = started(make_bundle, containers)
    out = ckpt("--print-stats", "--leave-running", cid)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["checkpoint_duration"] == doc["podman_checkpoint_duration"] > 0
    (c,) = doc["container_statistics"]
    assert c["Id"] == c["RawInput"] == cid
    assert 0 < c["runtime_checkpoint_duration"] <= doc["checkpoint_duration"]
    s = c["criu_statistics"]
    assert set(s) == {"freezing_time", "frozen_time", "memdump_time", "memwrite_time", "pages_scanned",
                      "pages_written"}
    assert s["pages_written"] > 0 and s["pages_scanned"] >= s["pages_written"] and s["frozen_time"] > 0
    assert c["runtime_checkpoint_duration"] >= s["frozen_time"]


def test_help_for_podmans_probe(ckpt):
    out = ckpt("--help")
    assert out.returncode == 0 and "--pre-checkpoint" in out.stdout


@pytest.fixture
def tiny_fs(tmp_path):
    """A 16 KiB tmpfs: room for the export probe, not for an archive."""
    target = tmp_path / "tiny"
    target.mkdir()
    with mounted("-t", "tmpfs", "-o", "size=16k", "tmpfs", str(target)):
        yield target


def test_full_disk_during_export_keeps_the_images_and_says_where(make_bundle, containers, ckpt, tmp_path,
                                                                 tiny_fs):
    b, cid = started(make_bundle, containers)
    log = tmp_path / "log.json"
    out = ckpt("-e", str(tiny_fs / "x.tar"), "-c", "none", cid,
               globals_=("--log-format", "json", "--log", str(log)))
    assert out.returncode == 1
    images = ckpt.state_dir / cid / "checkpoint"
    msg = one_error_line(log)
    assert f"the checkpoint images are kept in {images}" in msg
    assert os.listdir(tiny_fs) == []                 # no partial archive
    assert containers.status(cid) is None            # CRIU had stopped it: nothing lost, restore it
    before = b.counter()
    subprocess.run(["runc", "--root", str(containers.root), "restore", "-d", "--image-path", str(images),
                    "--bundle", str(b.path), cid], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)
    wait_for(lambda: b.counter() > before + 2, what="counter to continue after restore")
