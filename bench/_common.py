"""What the benchmarks share: one implementation each of timing, peak RSS, goal lines and private setups.

The benchmarks drive runc-ckpt only through its command line (the installed
`runc-ckpt` front end, or the one given by --runc-ckpt): nothing here or in
any bench imports runc_ckpt or the test suite. Everything a bench creates is
private: its own runc --root and runc-ckpt config/state dir under a temp
dir, and a private podman (own graphroot, runroot, containers.conf,
storage.conf, registries.conf, a private runc root for its runtime), so the
host's podman storage and /run/runc are never touched.

Exit codes of a bench (bench/run.py reads them): 0 ran and met every goal
it checks, GOAL_MISSED ran but missed a goal, anything else: it failed.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MIB = 1 << 20
GOAL_MISSED = 3
SBIN = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# In every runc container ID and cgroup path: runc's default cgroup is named after the ID, the
# same for every --root, so two runs at once (or a test run) must never share an ID.
RUN = f"{os.getpid()}"


class BenchError(Exception):
    """A contender or a setup step failed."""


# ---------------------------------------------------------------- command line


def tool(name: str) -> str | None:
    return shutil.which(name, path=os.environ.get("PATH", "") + ":" + SBIN)


def require(*names: str) -> None:
    missing = [n for n in names if tool(n) is None]
    if missing:
        raise BenchError(f"not installed: {', '.join(missing)} (run contrib/install-deps.sh)")


def default_runc_ckpt() -> str:
    """$RUNC_CKPT_BIN, else the runc-ckpt beside this Python (the venv's), else the checkout's .venv."""
    env = os.environ.get("RUNC_CKPT_BIN")
    if env:
        return env
    beside = os.path.join(os.path.dirname(sys.executable), "runc-ckpt")
    return beside if os.access(beside, os.X_OK) else str(REPO / ".venv" / "bin" / "runc-ckpt")


def real_runc() -> str:
    path = tool("runc")
    if path is None:
        raise BenchError("runc is not installed (run contrib/install-deps.sh)")
    return path


def add_common_args(ap: argparse.ArgumentParser) -> None:
    """--runc-ckpt, --smoke and --scale, the same in every bench (bench/run.py passes them on)."""
    ap.add_argument("--runc-ckpt", default=default_runc_ckpt(),
                    help="the runc-ckpt command to measure (default: $RUNC_CKPT_BIN, else the venv's)")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny sizes, one run, no goal checks: proves the real code path works, fast")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every default size")


def check_runc_ckpt(path: str) -> str:
    if not os.access(path, os.X_OK):
        raise BenchError(f"runc-ckpt is not an executable at {path}: run `make install` or pass --runc-ckpt")
    return os.path.abspath(path)


def scaled(default: float, scale: float, minimum: int = 1) -> int:
    return max(minimum, round(default * scale))


class Interrupted(BaseException):
    """SIGINT, SIGTERM or SIGHUP: the bench's finally blocks clean up, then it exits 130."""


def _interrupt(signum: int, _frame: object) -> None:
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)        # the clean-up itself must finish
    raise Interrupted(signal.Signals(signum).name)


def run_main(main) -> None:
    """sys.exit(main()): a signal cleans up and exits 130, a BenchError prints one line and exits 1."""
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _interrupt)
    name = os.path.basename(sys.argv[0])
    try:
        code = main()
    except (BenchError, subprocess.CalledProcessError) as e:
        print(f"{name}: FAILED: {e}", file=sys.stderr)
        code = 1
    except Interrupted as e:
        print(f"{name}: interrupted by {e}: cleaned up", file=sys.stderr)
        code = 130
    sys.exit(code)


# ---------------------------------------------------------------- timing and RSS


def sh(*argv: str, timeout: float | None = None, **kw: object) -> subprocess.CompletedProcess[str]:
    """Run argv (stdin /dev/null), which must succeed; its output is captured."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    out = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=timeout,
                         **kw)  # type: ignore[call-overload]
    if out.returncode != 0:
        raise BenchError(f"{shlex.join(argv[:6])}{' ...' if len(argv) > 6 else ''} exited {out.returncode}: "
                         f"{(out.stderr or out.stdout).strip()[-1500:]}")
    return out


def timed(*argv: str, **kw: object) -> float:
    """Wall seconds of argv, which must succeed (after a sync: no writeback of fresh data competes)."""
    os.sync()
    t = time.perf_counter()
    sh(*argv, **kw)
    return time.perf_counter() - t


# The meter: a small process that runs the command (stdin /dev/null, stdout and
# stderr to files, so a detached container cannot hold a pipe of ours open) and
# prints its exit code, wall seconds, CPU seconds and peak RSS (KiB) of the whole
# child tree: getrusage(RUSAGE_CHILDREN) after the wait, whose ru_maxrss is the
# largest single process among the command and every descendant it reaped
# (runc-ckpt's Python, runc, CRIU...; not a detached container, which is reparented).
# A vfork()ed child's ru_maxrss starts from its parent's high-water mark, so the
# parent must stay small: hence this tiny process (python -I -S), not the bench itself.
METER = ("import resource, subprocess, sys, time\n"
         "out, err = open(sys.argv[1], 'wb'), open(sys.argv[2], 'wb')\n"
         "t = time.perf_counter()\n"
         "rc = subprocess.run(sys.argv[3:], stdin=subprocess.DEVNULL, stdout=out, stderr=err).returncode\n"
         "t = time.perf_counter() - t\n"
         "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
         "print(rc, t, u.ru_utime + u.ru_stime, u.ru_maxrss)\n")


@dataclass
class Metered:
    wall: float          # seconds
    cpu: float           # user + system seconds of the whole tree
    rss: float           # MiB: the largest single process of the tree
    stdout: str = ""


def metered(argv: list[str], env: dict | None = None, cwd: str | None = None, sync: bool = True) -> Metered:
    """Wall/CPU time and peak RSS of argv (which must succeed), measured by the meter process."""
    if sync:
        os.sync()
    with tempfile.TemporaryDirectory(prefix="bench-meter-") as d:
        out, err = os.path.join(d, "out"), os.path.join(d, "err")
        done = subprocess.run([sys.executable, "-I", "-S", "-c", METER, out, err, *argv], capture_output=True,
                              text=True, env=env, cwd=cwd, stdin=subprocess.DEVNULL, check=False)
        try:
            rc, wall, cpu, rss = done.stdout.split()[-4:]
        except ValueError:
            raise BenchError(f"the meter failed on {argv[0]}: {done.stderr.strip()[-1500:]}") from None
        stdout = Path(out).read_text(errors="replace")
        if rc != "0":
            raise BenchError(f"{shlex.join(argv[:8])}{' ...' if len(argv) > 8 else ''} exited {rc}: "
                             f"{Path(err).read_text(errors='replace').strip()[-1500:]}")
    return Metered(float(wall), float(cpu), int(rss) / 1024, stdout)


def warm_pages(directory: Path, nbytes: int) -> None:
    """Touch nbytes of fresh memory through a file of zeros in directory, deleted at once: call it just
    before a timed run that writes that much into new pages (a restore's bundle).

    A VM guest that reports its free pages to the host (virtio-balloon free page reporting, as this
    project's Firecracker VMs do) waits for the host on its next write to each such page (~0.4 GB/s,
    measured in plugin/runc_ckpt/runtime/coldpages.py); pages freed less than ~2 s ago are still warm.
    Which contender of an interleaved bench got warm pages was luck (a 1 GiB restore took 2.0-4.7 s);
    with this each gets warm ones. Elsewhere it costs a write of nbytes that nobody times."""
    chunk = bytes(1 << 20)
    path = directory / ".bench-warm-pages"
    with open(path, "wb") as f:
        f.writelines(chunk for _ in range(0, nbytes, len(chunk)))
    path.unlink()


def settle(seconds: float) -> None:
    os.sync()
    if seconds > 0:
        time.sleep(seconds)


# ---------------------------------------------------------------- goals


@dataclass
class Goals:
    """Formats `name value (goal <= X: met|MISSED)` lines; in smoke mode goals are shown, never checked."""

    smoke: bool = False
    missed: list[str] = field(default_factory=list)

    def check(self, name: str, value: float, goal: float | None, unit: str = "") -> str:
        text = f"{name} {value:.3f}{unit}" if abs(value) < 10 else f"{name} {value:.1f}{unit}"
        if goal is None:
            return text
        if self.smoke:
            return f"{text} (goal <= {goal:g}{unit}: not checked in smoke mode)"
        ok = value <= goal
        if not ok:
            self.missed.append(name)
        return f"{text} (goal <= {goal:g}{unit}: {'met' if ok else 'MISSED'})"

    def exit_code(self) -> int:
        if self.missed:
            print(f"goals MISSED: {', '.join(self.missed)}")
            return GOAL_MISSED
        return 0


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("inf")


# ---------------------------------------------------------------- test data


def pool(rng: random.Random, n: int) -> bytes:
    """Semi-compressible data: a quarter random bytes, the rest log-like text."""
    words = [b"GET", b"/api/v1/items", b"200", b"OK", b"user=%d", b"latency_ms", b"INFO", b"trace"]
    lines = [b" ".join(rng.choice(words) for _ in range(8)) + b" %d\n" % rng.randrange(1 << 30)
             for _ in range(4096)]
    out = bytearray()
    while len(out) < n:
        out += rng.randbytes(4096) + b"".join(rng.choice(lines) for _ in range(200))[:12288]
    return bytes(out[:n])


def write_pool_files(dest: str, mib: int, per_file: int = 64, seed: int = 42) -> None:
    """mib MiB of pool() slices in files of per_file MiB (slices of a pool far bigger than zstd's window)."""
    rng = random.Random(seed)
    os.makedirs(dest, exist_ok=True)
    data = pool(rng, 32 * MIB)
    left, i = mib, 0
    while left > 0:
        with open(os.path.join(dest, f"big-{i:03d}.bin"), "wb") as f:
            for _ in range(min(per_file, left)):
                off = rng.randrange(0, len(data) - MIB)
                f.write(data[off:off + MIB])
        left -= per_file
        i += 1


def write_half_random(dest: str, mib: int, file_mib: int = 16) -> None:
    """mib MiB in files of file_mib MiB, each MiB half random, half zeros (compresses about 2:1)."""
    os.makedirs(dest, exist_ok=True)
    half = MIB // 2
    left, i = mib, 0
    while left > 0:
        n = min(file_mib, left)
        with open(os.path.join(dest, f"file-{i:05d}"), "wb") as f:
            f.writelines(os.urandom(half) + bytes(half) for _ in range(n))
        left -= n
        i += 1


def write_small_files(top: str, files: int, kib: int, name: str = "f{:07d}.js", compressible: bool = False) -> None:
    """files files of kib KiB, 1000 per directory, like a package tree: each half random, half zeros
    (about 2:1), or with compressible, slices of pool()'s log-like text (about 4:1)."""
    rnd = pool(random.Random(42), 1 << 20) if compressible else os.urandom(1 << 20)
    size = kib * 1024
    for i in range(files):
        d = os.path.join(top, f"d{i // 1000:04d}")
        if i % 1000 == 0:
            os.makedirs(d, exist_ok=True)
        off = (i * 4099) % (len(rnd) - size)
        with open(os.path.join(d, name.format(i)), "wb") as f:
            f.write(rnd[off:off + size] if compressible else rnd[off:off + size // 2] + bytes(size - size // 2))


# Fills N MiB with data that compresses about like a heap (a quarter of every
# page random, the rest text), touches it all, signals readiness with a file, sleeps.
FILLER_C = r"""
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    size_t n = strtoul(argv[1], 0, 10) << 20;
    unsigned char *p = malloc(n);
    static const char text[] = "GET /api/v1/items 200 OK user=4711 latency_ms=12 INFO trace=abc\n";
    unsigned long long x = 88172645463325252ULL;
    if (!p) return 1;
    for (size_t i = 0; i < n; i += 4096) {
        for (int j = 0; j < 1024; j += 8) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            *(unsigned long long *)(p + i + j) = x;
        }
        for (int j = 1024; j < 4096; j++) p[i + j] = text[(j + i / 4096) % (sizeof text - 1)];
    }
    close(open(argv[2], O_CREAT | O_WRONLY, 0644));
    for (;;) pause();
}
"""


def build_memfill(work: Path) -> Path:
    """The memory filler above, built static (it runs in a busybox-static image as /bin/memfill N READY)."""
    src = work / "memfill.c"
    src.write_text(FILLER_C)
    binary = work / "memfill"
    sh("gcc", "-static", "-O2", "-o", str(binary), str(src))
    return binary


def wait_file(path: Path, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out waiting for {what}")
        time.sleep(0.05)


def du_mib(path: str) -> float:
    return int(sh("du", "-sb", path).stdout.split()[0]) / MIB


# ---------------------------------------------------------------- images, bundles, runc


def busybox_tar(dest: Path, extra: dict[str, str] | None = None) -> Path:
    """A tarball of a busybox-static root (/bin/busybox, applet links, /etc/passwd) for `podman import`
    and for the runc bundles' lower dir; extra maps names in the image to host files to add."""
    busybox = tool("busybox")
    if busybox is None:
        raise BenchError("busybox is not installed (run contrib/install-deps.sh)")
    applets = sh(busybox, "--list").stdout.split()
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(dest, "w") as tar:
        for d in ("bin", "etc", "tmp", "proc", "sys", "dev", "run", "root", "data"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        tar.add(busybox, arcname="bin/busybox")
        for applet in sorted(set(applets) - {"busybox"}):
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            tar.addfile(info)
        for name, text in (("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"), ("etc/group", "root:x:0:\n")):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
        for arcname, path in (extra or {}).items():
            tar.add(path, arcname=arcname)
    return dest


def unpack(tar_path: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    sh("tar", "-C", str(dest), "-xf", str(tar_path))
    return dest


def make_spec(args: list[str]) -> dict:
    """A runc spec for a non-terminal process with a writable rootfs (as the integration tests use)."""
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_CHOWN",
                                 "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_SETUID", "CAP_SETGID"]
                             for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": "runc-ckpt-bench",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }


def mount_overlay(lower: Path, upper: Path, work: Path, target: Path) -> None:
    sh("mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lower},upperdir={upper},workdir={work}", str(target))


def overlay_bundle(path: Path, lower: Path, args: list[str]) -> Path:
    """A bundle at path: rootfs an overlay of lower (upper/ and work/ beside it), config.json running args."""
    for d in ("upper", "work", "rootfs"):
        (path / d).mkdir(parents=True, exist_ok=True)
    mount_overlay(lower, path / "upper", path / "work", path / "rootfs")
    (path / "config.json").write_text(json.dumps(make_spec(args)))
    return path


def mounts_under(prefix: str | Path) -> list[str]:
    """Mount points at or below prefix, deepest first."""
    prefix = str(prefix)
    with open("/proc/self/mounts", encoding="utf-8") as f:
        points = {line.split()[1].replace("\\040", " ") for line in f}
    return sorted((p for p in points if p == prefix or p.startswith(prefix + "/")), key=len, reverse=True)


def umount_under(prefix: str | Path) -> None:
    for point in mounts_under(prefix):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


@dataclass
class Runc:
    """The real runc under a private --root (never /run/runc)."""

    root: Path
    binary: str = field(default_factory=real_runc)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.binary, "--root", str(self.root), *args], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, check=False)

    def argv(self, *args: str) -> list[str]:
        return [self.binary, "--root", str(self.root), *args]

    def run_detached(self, bundle: Path, cid: str) -> None:
        # All stdio /dev/null: CRIU cannot dump a container whose stdio is a host file or a pipe.
        code = subprocess.run(self.argv("run", "-d", "--bundle", str(bundle), cid), stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False).returncode
        if code != 0:
            raise BenchError(f"runc run {cid} exited {code} (try it by hand on {bundle})")

    def remove(self, cid: str) -> None:
        self("kill", cid, "KILL")
        for _ in range(50):
            state = self("state", cid)
            if state.returncode != 0 or '"stopped"' in state.stdout:
                break
            time.sleep(0.02)
        self("delete", "--force", cid)

    def remove_all(self) -> None:
        if self.root.is_dir():
            for cid in os.listdir(self.root):
                self.remove(cid)


def runc_ckpt_config(path: Path, state_dir: Path, volume_roots: list[str] | None = None, **extra: object) -> dict:
    """A private runc-ckpt config (its own state dir) and the environment that selects it."""
    text = f"state_dir: {state_dir}\nvolume_roots: {json.dumps(volume_roots or [])}\n"
    text += "".join(f"{k}: {json.dumps(v)}\n" for k, v in extra.items())
    path.write_text(text)
    return dict(os.environ, RUNC_CKPT_CONFIG=str(path))


# ---------------------------------------------------------------- private podman


class PodmanEnv:
    """A private podman: own graphroot, runroot, containers.conf (nofile/nproc ulimits, netns none,
    cgroupfs), storage.conf and registries.conf, rendered from contrib/private-*.conf.in as the
    tests and the demo do; its runtime is `runtime` (the real runc, or runc-ckpt) behind a two-line
    sh wrapper that adds a private --root. directory must be short: podman refuses a runroot
    longer than 50 characters."""

    IMAGE = "localhost/runc-ckpt-bench-busybox:latest"

    def __init__(self, directory: Path, runtime: str) -> None:
        require("podman", "conmon")
        self.dir = directory
        self.image = self.IMAGE
        self.podman_bin = tool("podman") or "podman"
        self.runc_root = directory / "runc"
        self.root = directory / "root"
        self.runroot = directory / "runroot"
        for d in (directory / "tmp", directory / "networks", directory / "bin", self.runc_root):
            d.mkdir(parents=True, exist_ok=True)
        wrapper = directory / "bin" / "runc-ckpt"
        wrapper.write_text(f"#!/bin/sh\nexec {shlex.quote(runtime)} --root {shlex.quote(str(self.runc_root))} \"$@\"\n")
        wrapper.chmod(0o755)

        def render(name: str) -> str:
            text = (REPO / "contrib" / name).read_text()
            return text.replace("@DIR@", str(directory)).replace("@RUNTIME@", str(wrapper))

        conf, storage, registries = directory / "containers.conf", directory / "storage.conf", directory / "reg.conf"
        conf.write_text(render("private-containers.conf.in"))
        storage.write_text(render("private-storage.conf.in"))
        registries.write_text("unqualified-search-registries = []\n")
        self.env = dict(os.environ, CONTAINERS_CONF=str(conf), CONTAINERS_STORAGE_CONF=str(storage),
                        CONTAINERS_REGISTRIES_CONF=str(registries))

    def argv(self, *args: str) -> list[str]:
        return [self.podman_bin, "--root", str(self.root), "--runroot", str(self.runroot),
                "--storage-driver", "overlay", *args]

    def __call__(self, *args: str, timeout: float = 3600) -> str:
        """podman ARGS (must succeed): its stdout, stripped."""
        return sh(*self.argv(*args), env=self.env, timeout=timeout).stdout.strip()

    def import_image(self, image_tar: Path) -> None:
        self("import", "-q", "--change", "ENV=PATH=/usr/sbin:/usr/bin:/sbin:/bin", str(image_tar), self.image)

    def volume_dir(self, volume: str) -> Path:
        return self.root / "volumes" / volume / "_data"

    def teardown(self) -> None:
        """Remove containers, volumes and images, then every mount and file; never raises."""
        for args in (("rm", "-fa", "-t", "0"), ("volume", "rm", "-fa"), ("rmi", "-fa")):
            try:
                subprocess.run(self.argv(*args), capture_output=True, env=self.env, stdin=subprocess.DEVNULL,
                               timeout=120, check=False)
            except (subprocess.SubprocessError, OSError):
                pass
        if self.runc_root.is_dir():
            Runc(self.runc_root).remove_all()
        umount_under(self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def private_podman(runtime: str, image_tar: Path | None = None) -> Iterator[PodmanEnv]:
    env = PodmanEnv(Path(tempfile.mkdtemp(prefix="rcb-", dir="/tmp")), runtime)
    try:
        if image_tar is not None:
            env.import_image(image_tar)
        yield env
    finally:
        env.teardown()


# ---------------------------------------------------------------- private registry


@contextmanager
def registry(tmp: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """(HOST:PORT, environment for skopeo/runc-ckpt) of a private docker-registry on 127.0.0.1."""
    binary = tool("docker-registry")
    if binary is None:
        raise BenchError("docker-registry is not installed (run contrib/install-deps.sh)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    storage = tmp / "registry-storage"
    storage.mkdir()
    conf = tmp / "registry.yml"
    conf.write_text(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {storage}\n"
                    f"http:\n  addr: 127.0.0.1:{port}\n")
    host = f"127.0.0.1:{port}"
    registries = tmp / "registries.conf"
    registries.write_text(f'unqualified-search-registries = []\n[[registry]]\nlocation = "{host}"\ninsecure = true\n')
    with open(tmp / "registry.log", "wb") as log:
        proc = subprocess.Popen([binary, "serve", str(conf)], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(f"http://{host}/v2/", timeout=1).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise BenchError(f"registry did not start: {(tmp / 'registry.log').read_text()}") from None
                    time.sleep(0.1)
            yield host, dict(os.environ, CONTAINERS_REGISTRIES_CONF=str(registries))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
