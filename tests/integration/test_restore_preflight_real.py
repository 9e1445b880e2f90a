"""The host pre-flight on the real stack: each cross-host failure cause, caught before anything is touched.

Host A (its own runc --root and state dir) runs a container and
checkpoints it; host B (its own --root, state dir and bundle over its own
"base image", a copy of A's lower dir with one thing changed) restores it.
Each test shows (1) with --skip-preflight the restore really goes wrong on
runc + CRIU, and (2) without it the refusal names the cause and leaves B as
it was. Causes on files and flags go through `restore --import` (the
archive's recorded needs); bind sources, the CPU and the ID in use through
runc's own `restore --image-path` (needs read from the CRIU images alone).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.conftest import COUNTER, Bundle, make_spec, overlay_bundle, wait_for
from tests.integration.migrate_helpers import Host, make_host, socket_pair
from tests.integration.test_restore_import_real import build_archive

LIBC = "lib/x86_64-linux-gnu/libc.so.6"
NOT_BASE = "the bundle's rootfs is not the checkpoint's base image"


@pytest.fixture(scope="session")
def dyn_lower(busybox_lower: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """busybox plus two dynamically linked programs (flock, sleep) and the libraries they map."""
    lower = tmp_path_factory.mktemp("dyn") / "lower"
    subprocess.run(["cp", "-a", str(busybox_lower), str(lower)], check=True)
    for prog in ("/usr/bin/flock", "/usr/bin/sleep"):
        if not os.path.exists(prog):
            pytest.skip(f"{prog} is missing")
        out = subprocess.run(["ldd", prog], capture_output=True, text=True, check=True).stdout
        libs = [w for line in out.splitlines() for w in line.split() if w.startswith("/")]
        for path in [prog, *libs]:
            dest = lower / os.path.realpath(path).lstrip("/") if path == prog else lower / path.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
    (lower / "opt" / "cfg").mkdir(parents=True)
    return lower


class Scene:
    """Host A with a running container; host B with a bundle over a copy of A's base, changed by `change`."""

    def __init__(self, tmp_path: Path, lower: Path, bin_: str, args: list[str], binds: dict[str, Path] | None = None):
        self.tmp, self.bin = tmp_path, bin_
        self.a, self.b = make_host(tmp_path, "a", []), make_host(tmp_path, "b", [])
        self.lower_b = tmp_path / "lower-b"
        subprocess.run(["cp", "-a", str(lower), str(self.lower_b)], check=True)
        self.src = overlay_bundle(tmp_path / "src", lower)
        spec = make_spec(args)
        for dest, source in (binds or {}).items():
            spec["mounts"].append({"destination": dest, "type": "bind", "source": str(source),
                                   "options": ["rbind", "rw"]})
        self.src.write_config(spec)
        self.cid = "pf-" + tmp_path.name[-8:].replace("_", "-").strip("-")
        self.dst: Bundle | None = None
        self.mounted: list[Bundle] = [self.src]
        subprocess.run(["runc", "--root", str(self.a.root), "run", "-d", "--bundle", str(self.src.path), self.cid],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)

    def runc_ckpt(self, host: Host, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(host.runc_ckpt(self.bin, *args), stdin=subprocess.DEVNULL, capture_output=True,
                             text=True, env=host.env, timeout=180, check=False)
        if check:
            assert out.returncode == 0, out.stderr
        return out

    def export(self, *flags: str) -> Path:
        archive = self.tmp / "ckpt.tar.zst"
        self.runc_ckpt(self.a, "checkpoint", *flags, "--export", str(archive), self.cid, check=True)
        return archive

    def images(self, *flags: str) -> Path:
        images = self.tmp / "images"
        out = subprocess.run(["runc", "--root", str(self.a.root), "checkpoint", *flags, "--image-path", str(images),
                              self.cid], capture_output=True, text=True, check=False)
        assert out.returncode == 0, out.stderr
        return images

    def target(self, spec_change=None) -> Bundle:
        """Host B's bundle over lower-b (change lower-b before calling), with A's spec."""
        self.dst = overlay_bundle(self.tmp / "dst", self.lower_b)
        self.mounted.append(self.dst)
        spec = self.src.config()
        if spec_change:
            spec_change(spec)
        self.dst.write_config(spec)
        return self.dst

    def snapshot(self) -> dict:
        assert self.dst is not None
        tree = sorted(str(p.relative_to(self.dst.path)) for p in self.dst.path.rglob("*") if "rootfs" not in p.parts)
        return {"tree": tree, "config": self.dst.config_path.read_text(), "upper": sorted(os.listdir(self.dst.upper)),
                "containers": self.containers_b()}

    def containers_b(self) -> list[str]:
        out = subprocess.run(["runc", "--root", str(self.b.root), "list", "-q"], capture_output=True, text=True,
                             check=False)
        return out.stdout.split()

    def restore_import(self, archive: Path, *flags: str) -> subprocess.CompletedProcess[str]:
        assert self.dst is not None
        return self.runc_ckpt(self.b, "restore", "--import", str(archive), "--bundle", str(self.dst.path), "-d",
                              *flags, self.cid)

    def restore_images(self, images: Path, *flags: str) -> subprocess.CompletedProcess[str]:
        assert self.dst is not None
        work = self.tmp / "work-b"
        return self.runc_ckpt(self.b, "restore", "--image-path", str(images), "--work-path", str(work),
                              "--bundle", str(self.dst.path), "-d", *flags, self.cid)

    def refused_untouched(self, run, cause: str) -> str:
        """(2): the pre-flight refuses, names the cause, and host B is as it was."""
        before = self.snapshot()
        out = run()
        assert out.returncode != 0, out.stderr
        assert cause in out.stderr, out.stderr
        assert "pre-flight" in out.stderr or "--skip-preflight" in out.stderr, out.stderr
        assert self.snapshot() == before
        return out.stderr

    def cleanup(self) -> None:
        for host in (self.a, self.b):
            subprocess.run(["runc", "--root", str(host.root), "delete", "--force", self.cid], capture_output=True,
                           check=False)
        for b in self.mounted:
            subprocess.run(["umount", "-l", str(b.rootfs)], check=False)


@pytest.fixture
def scene(tmp_path, dyn_lower, runc_ckpt_bin, containers):
    made: list[Scene] = []

    def factory(args: list[str], binds: dict[str, Path] | None = None) -> Scene:
        s = Scene(tmp_path, dyn_lower, runc_ckpt_bin, args, binds)
        made.append(s)
        return s

    yield factory
    for s in made:
        s.cleanup()


def _failed_after_apply(out: subprocess.CompletedProcess[str]) -> None:
    """(1): with --skip-preflight runc + CRIU got to run, and failed."""
    assert out.returncode != 0, out.stderr
    assert "pre-flight (skipped)" in out.stderr, out.stderr


def test_matching_host_passes_check_and_restores(scene):
    """No false refusal: B over the same base passes --check (exit 0, all pass) and restores."""
    s = scene(["/usr/bin/flock", "/tmp/lk", "/bin/sh", "-c", "exec 3</etc/lower-file; " + COUNTER])
    wait_for(lambda: (s.src.rootfs / "counter").exists(), what="counter")
    archive = s.export("--file-locks")
    s.target()
    chk = s.restore_import(archive, "--check", "--file-locks")
    assert chk.returncode == 0, chk.stdout + chk.stderr
    assert "FAIL" not in chk.stdout and "cpu" in chk.stdout and "files" in chk.stdout
    assert s.containers_b() == []
    out = s.restore_import(archive, "--file-locks")
    assert out.returncode == 0, out.stderr
    assert s.containers_b() == [s.cid]


def test_mapped_library_changed_size(scene):
    s = scene(["/usr/bin/sleep", "100000"])
    archive = s.export()
    with open(s.lower_b / LIBC, "ab") as f:
        f.write(b"\0" * (100 << 10))
    s.target()
    err = s.refused_untouched(lambda: s.restore_import(archive), f"/{LIBC} is ")
    assert "here but was" in err and NOT_BASE in err
    chk = s.restore_import(archive, "--check")
    assert chk.returncode == 1 and "FAIL" in chk.stdout and "libc.so.6" in chk.stdout
    out = s.restore_import(archive, "--skip-preflight")
    _failed_after_apply(out)
    log = (Path(s.b.root).parent / "state" / s.cid / "restore-work" / "restore.log")
    assert "has bad size" in log.read_text()


def _flip_build_id(path: Path) -> None:
    out = subprocess.run(["readelf", "-n", str(path)], capture_output=True, text=True, check=True).stdout
    bid = bytes.fromhex(next(line.split(":")[1].strip() for line in out.splitlines() if "Build ID" in line))
    data = bytearray(path.read_bytes())
    at = data.find(bid)
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def test_changed_binary_same_size_other_build_id(scene):
    s = scene(["/bin/sh", "-c", COUNTER])
    archive = s.export()
    size = (s.lower_b / "bin" / "busybox").stat().st_size
    _flip_build_id(s.lower_b / "bin" / "busybox")
    assert (s.lower_b / "bin" / "busybox").stat().st_size == size
    s.target()
    err = s.refused_untouched(lambda: s.restore_import(archive), "/bin/busybox has build-ID")
    assert "same size, another build" in err
    _failed_after_apply(s.restore_import(archive, "--skip-preflight"))


def test_wrong_base_image(scene):
    s = scene(["/bin/sh", "-c", "exec 3</etc/lower-file; " + COUNTER])
    archive = s.export()
    (s.lower_b / "etc" / "lower-file").unlink()     # another image: it has no such file
    s.target()
    err = s.refused_untouched(lambda: s.restore_import(archive), "/etc/lower-file is missing here")
    assert NOT_BASE in err
    _failed_after_apply(s.restore_import(archive, "--skip-preflight"))


def test_missing_bind_source(scene, tmp_path):
    cfg = tmp_path / "cfg-a"
    cfg.mkdir()
    s = scene(["/bin/sh", "-c", "cd /opt/cfg; while true; do sleep 1; done"], binds={"/opt/cfg": cfg})
    images = s.images()
    s.target(lambda spec: spec["mounts"][-1].update(source=str(tmp_path / "cfg-b")))
    s.refused_untouched(lambda: s.restore_images(images), f"bind source {tmp_path / 'cfg-b'} (mounted at /opt/cfg)"
                                                          " does not exist here")
    out = s.restore_images(images, "--skip-preflight")
    _failed_after_apply(out)
    assert s.containers_b() == []


def test_file_where_a_directory_was(scene, tmp_path):
    cfg = tmp_path / "cfg-a"
    cfg.mkdir()
    s = scene(["/bin/sh", "-c", "cd /opt/cfg; while true; do sleep 1; done"], binds={"/opt/cfg": cfg})
    images = s.images()
    (tmp_path / "cfg-b").write_text("a file\n")
    s.target(lambda spec: spec["mounts"][-1].update(source=str(tmp_path / "cfg-b")))
    err = s.refused_untouched(lambda: s.restore_images(images), "is a file here but is mounted on a directory")
    assert f"put a directory at {tmp_path / 'cfg-b'}" in err
    _failed_after_apply(s.restore_images(images, "--skip-preflight"))


def test_tcp_without_the_flag(scene):
    s = scene(["/bin/sh", "-c", "sleep 100000 | nc -l -p 7000 >/dev/null & sleep 0.5; sleep 100000 | nc 127.0.0.1 7000 & "
               + COUNTER])
    wait_for(lambda: (s.src.rootfs / "counter").exists(), what="counter")
    time.sleep(1)
    archive = s.export("--tcp-established")
    s.target()
    err = s.refused_untouched(lambda: s.restore_import(archive), "established TCP connections but the restore "
                                                                 "lacks --tcp-established")
    assert "add --tcp-established" in err
    out = s.restore_import(archive, "--skip-preflight")
    _failed_after_apply(out)
    log = (Path(s.b.root).parent / "state" / s.cid / "restore-work" / "restore.log")
    assert "Connected TCP socket in image" in log.read_text()


def test_file_locks_without_the_flag(scene):
    """CRIU does not fail here: it restores the process without its lock, which a second flock shows."""
    s = scene(["/usr/bin/flock", "/tmp/lk", "/usr/bin/sleep", "100000"])
    wait_for(lambda: (s.src.rootfs / "tmp" / "lk").exists(), what="lock file")
    archive = s.export("--file-locks")
    s.target()
    err = s.refused_untouched(lambda: s.restore_import(archive), "file locks but the restore lacks --file-locks")
    assert "add --file-locks" in err
    out = s.restore_import(archive, "--skip-preflight")
    assert "pre-flight (skipped)" in out.stderr and out.returncode == 0, out.stderr
    # The restored process should hold the lock; without --file-locks it does not: a second taker gets it.
    probe = subprocess.run(["runc", "--root", str(s.b.root), "exec", s.cid, "/usr/bin/flock", "-n", "/tmp/lk",
                            "true"], capture_output=True, text=True, timeout=30, check=False)
    assert probe.returncode == 0, "the lock was restored after all"


def test_id_in_use(scene, tmp_path):
    s = scene(["/bin/sh", "-c", COUNTER])
    images = s.images()
    s.target()
    other = overlay_bundle(tmp_path / "other", s.lower_b)
    s.mounted.append(other)
    other.write_config(make_spec(["/bin/sh", "-c", "while true; do sleep 1; done"]))
    subprocess.run(["runc", "--root", str(s.b.root), "run", "-d", "--bundle", str(other.path), s.cid],
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    archive_dir = tmp_path / "exported"
    assert s.dst is not None
    before = s.snapshot()
    # (2) restore --import: refused before anything is staged, naming the cause and the fix.
    out = s.runc_ckpt(s.b, "restore", "--import", str(_archive_from(s, images, archive_dir)), "--bundle",
                      str(s.dst.path), "-d", s.cid)
    assert out.returncode != 0 and f"container {s.cid} already exists: choose another ID" in out.stderr
    assert s.snapshot() == before
    # (1) runc's own restore of the same images fails on the ID.
    out = s.restore_images(images, "--skip-preflight")
    assert out.returncode != 0 and "exists" in out.stderr, out.stderr


def _archive_from(s: Scene, images: Path, where: Path) -> Path:
    """An archive of runc's own images (the test builder of test_restore_import_real)."""
    where.mkdir()
    archive = where / "ckpt.tar.zst"
    build_archive(archive, images, s.src, s.cid)
    return archive


def test_cpuinfo_this_cpu_lacks(scene):
    """A cpuinfo image forged with AMX state (xfeatures 17, 18) this CPU lacks: criu cpuinfo check refuses it,
    and so does the pre-flight. CRIU's restore itself never reads cpuinfo.img unless asked (--cpu-cap), so
    with --skip-preflight the restore goes on: the mismatch would surface later as SIGILL or a bad xsave."""
    pytest.importorskip("pycriu")
    from pycriu import images as pimages
    if "amx_tile" in Path("/proc/cpuinfo").read_text():
        pytest.skip("this CPU has AMX")
    s = scene(["/bin/sh", "-c", COUNTER])
    images = s.images()
    subprocess.run(["criu", "cpuinfo", "dump", "-D", str(images)], check=True)
    with open(images / "cpuinfo.img", "rb") as f:
        doc = pimages.load(f)
    entry = doc["entries"][0]["x86_entry"][0]
    entry["xfeatures_mask"] |= (1 << 17) | (1 << 18)
    entry["xsave_size"] = entry["xsave_size_max"] = 11008
    with open(images / "cpuinfo.img", "wb") as f:
        pimages.dump(doc, f)
    direct = subprocess.run(["criu", "cpuinfo", "check", "-D", str(images)], capture_output=True, text=True,
                            check=False)
    assert direct.returncode != 0 and "xfeatures has unsupported bits" in direct.stdout + direct.stderr
    s.target()
    err = s.refused_untouched(lambda: s.restore_images(images), "this CPU lacks features of the checkpointing CPU")
    assert "xfeatures has unsupported bits" in err
    chk = s.restore_images(images, "--check")
    assert chk.returncode == 1 and "cpu" in chk.stdout and "FAIL" in chk.stdout
    assert s.containers_b() == []


def test_migration_receiver_refuses_before_the_freeze(scene, tmp_path):
    """--handshake: the hello carries the needs known before the freeze; B's no-go names the cause, A runs on."""
    cfg = tmp_path / "cfg-a"
    cfg.mkdir()
    s = scene(["/bin/sh", "-c", "cd /opt/cfg; " + COUNTER], binds={"/opt/cfg": cfg})
    (tmp_path / "cfg-b").write_text("a file\n")
    s.target(lambda spec: spec["mounts"][-1].update(source=str(tmp_path / "cfg-b")))
    before = s.snapshot()
    assert s.dst is not None
    snd, rcv = socket_pair(s.a.runc_ckpt(s.bin, "checkpoint", "--export", "-", "--handshake", s.cid),
                           s.b.runc_ckpt(s.bin, "restore", "--import", "-", "--handshake", "--bundle",
                                         str(s.dst.path), "-d", s.cid), s.a.env, s.b.env)
    assert snd.returncode != 0 and rcv.returncode != 0
    assert "the receiver refused the migration" in snd.stderr, snd.stderr
    assert "is a file here but was a directory when checkpointed" in snd.stderr, snd.stderr
    assert "the container was not touched" in snd.stderr
    state = subprocess.run(["runc", "--root", str(s.a.root), "state", s.cid], capture_output=True, text=True,
                           check=False)
    assert '"status": "running"' in state.stdout
    assert s.snapshot() == before


@pytest.mark.parametrize("entry", ["none", "dir without state.json"])
def test_real_runc_finds_no_container_where_its_root_holds_no_state(tmp_path, entry, real_runc):
    """What restore --import's ID check relies on (importer._IdCheck): with no entry named ID under runc's root,
    the real runc says the container does not exist, so not asking it changes no answer. (An entry of that name
    is always asked: here runc says the same of a dir without state.json; the test above has a running one.)"""
    root = tmp_path / "runc-root"
    root.mkdir()
    if entry != "none":
        (root / "web").mkdir()
    out = subprocess.run([real_runc, "--root", str(root), "state", "web"], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, check=False)
    assert out.returncode != 0 and "does not exist" in out.stderr, out
