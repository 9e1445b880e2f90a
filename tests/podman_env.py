"""A private podman for end-to-end tests: own config, storage, locks and runc root.

Tests use it as

    from tests.podman_env import podman_env  # noqa: F401

    def test_x(podman_env):
        podman_env.podman("run", "-d", "--name", "c", podman_env.image, "sleep", "100")

The configuration is rendered from contrib/private-containers.conf.in and
contrib/private-storage.conf.in, the same templates contrib/demo.sh uses, so
the demo and the tests run podman the same way. Nothing of the host's podman
setup is written: CONTAINERS_CONF, CONTAINERS_STORAGE_CONF and
CONTAINERS_REGISTRIES_CONF name private files, every podman call passes
--root/--runroot/--storage-driver, and the runtime's state lives in a private
runc root. For that last one the registered runtime is a two-line sh script
that execs the runc-ckpt front end with `--root DIR/runc` in front of
podman's own arguments: `podman --runtime-flag root=...` would not do,
because podman leaves runtime flags out of the `container cleanup` exit
command it gives conmon, so that cleanup would look in /run/runc.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, require_tool

IMAGE = "localhost/runc-ckpt-busybox:test"
# A counter that shows a process went on: it writes to the named volume at /data,
# by rename, so that a reader never sees a half-written (empty) file.
COUNTER = "i=0; while true; do i=$((i+1)); echo $i > /data/.counter; mv /data/.counter /data/counter; sleep 0.1; done"


def render(template: Path, directory: Path, runtime: str = "") -> str:
    """Fill one of the contrib/private-*.conf.in templates."""
    return template.read_text().replace("@DIR@", str(directory)).replace("@RUNTIME@", runtime)


def build_busybox_tar(dest: Path) -> Path:
    """A tarball of a busybox-static root (/bin/busybox + applet links) for `podman import`."""
    busybox = require_tool("busybox")
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
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
    return dest


def _mounts_under(directory: Path) -> list[str]:
    """Mount points at or below directory, deepest first."""
    prefix = str(directory)
    points = []
    with open("/proc/self/mounts", encoding="utf-8") as f:
        for line in f:
            point = line.split()[1].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    return sorted(set(points), key=len, reverse=True)


class PodmanEnv:
    """One private podman setup under `directory`, with runc-ckpt as its runtime."""

    def __init__(self, directory: Path, runtime: str) -> None:
        self.dir = directory
        self.runtime = runtime
        self.image = IMAGE
        self.podman_bin = require_tool("podman")
        self.runc_root = directory / "runc"
        self.root = directory / "root"
        self.runroot = directory / "runroot"
        for d in (directory / "tmp", directory / "networks", directory / "bin", self.runc_root):
            d.mkdir(parents=True, exist_ok=True)
        self.runtime_wrapper = directory / "bin" / "runc-ckpt"
        self.runtime_wrapper.write_text(f"#!/bin/sh\nexec {shlex.quote(runtime)} --root "
                                        f"{shlex.quote(str(self.runc_root))} \"$@\"\n")
        self.runtime_wrapper.chmod(0o755)
        self.conf = directory / "containers.conf"
        self.conf.write_text(render(REPO / "contrib" / "private-containers.conf.in", directory,
                                    str(self.runtime_wrapper)))
        self.storage_conf = directory / "storage.conf"
        self.storage_conf.write_text(render(REPO / "contrib" / "private-storage.conf.in", directory))
        self.registries_conf = directory / "registries.conf"
        self.registries_conf.write_text("unqualified-search-registries = []\n")
        self.env = dict(os.environ, CONTAINERS_CONF=str(self.conf),
                        CONTAINERS_STORAGE_CONF=str(self.storage_conf),
                        CONTAINERS_REGISTRIES_CONF=str(self.registries_conf))

    def import_image(self, image_tar: Path) -> None:
        """`podman import` the busybox tarball as self.image, with a PATH set."""
        self.podman("import", "-q", "--change", "ENV=PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                    str(image_tar), self.image)

    def argv(self, *args: str) -> list[str]:
        """The full podman command line for args, with every private setting."""
        return [self.podman_bin, "--root", str(self.root), "--runroot", str(self.runroot),
                "--storage-driver", "overlay", *args]

    def podman(self, *args: str, check: bool = True, timeout: float = 120,
               **kw: object) -> subprocess.CompletedProcess[str]:
        """Run podman; with check, a failure fails the test showing podman's output."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        out = subprocess.run(self.argv(*args), capture_output=True, text=True, env=self.env,
                             timeout=timeout, check=False, **kw)  # type: ignore[call-overload]
        if check and out.returncode != 0:
            pytest.fail(f"podman {' '.join(args)} exited {out.returncode}\nstdout: {out.stdout}\n"
                        f"stderr: {out.stderr}", pytrace=False)
        return out

    def inspect(self, name: str) -> dict:
        return json.loads(self.podman("inspect", name).stdout)[0]

    def run_counter(self, name: str | None = None, volume: str | None = None) -> str:
        """Start a detached counter container writing /data/counter; returns its name."""
        name = name or f"c-{uuid.uuid4().hex[:8]}"
        vol = ["-v", f"{volume}:/data"] if volume else []
        self.podman("run", "-d", "--name", name, "--runtime", "runc-ckpt", *vol, self.image,
                    "sh", "-c", COUNTER)
        return name

    def volume_dir(self, volume: str) -> Path:
        """Where a named volume's data lives on the host."""
        return self.root / "volumes" / volume / "_data"

    def counter(self, name: str) -> int:
        """The counter value a container has written so far (0 before the first write)."""
        out = self.podman("exec", name, "cat", "/data/counter", check=False)
        text = out.stdout.strip()
        return int(text) if out.returncode == 0 and text.isdigit() else 0

    def teardown(self) -> None:
        """Remove containers, volumes and images, then every mount and file; never raises."""
        for args in (("rm", "-fa", "-t", "0"), ("volume", "rm", "-fa"), ("rmi", "-fa")):
            try:
                self.podman(*args, check=False, timeout=60)
            except (subprocess.SubprocessError, OSError):
                pass
        # Containers podman lost track of (e.g. a half-done restore) still live in our runc root.
        runc = shutil.which("runc", path="/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin")
        if runc and self.runc_root.is_dir():
            for cid in os.listdir(self.runc_root):
                subprocess.run([runc, "--root", str(self.runc_root), "delete", "--force", cid],
                               capture_output=True, check=False)
        for point in _mounts_under(self.dir):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


_image_tar: Path | None = None


def busybox_image_tar(factory: pytest.TempPathFactory) -> Path:
    """The busybox-static image tarball, built once per session.

    A plain cached function rather than a fixture, so that test modules need
    to import only `podman_env`.
    """
    global _image_tar
    if _image_tar is None or not _image_tar.exists():
        _image_tar = build_busybox_tar(factory.mktemp("busybox-image") / "busybox.tar")
    return _image_tar


def unpack_busybox(factory: pytest.TempPathFactory, rootfs: Path) -> None:
    """The busybox-static image's files into rootfs (a dir that exists), with GNU tar: the image is the
    session's own (tarfile's extraction filters arrived in 3.11.4; Debian 12's python3 is 3.11.2)."""
    subprocess.run(["tar", "-C", str(rootfs), "-xf", str(busybox_image_tar(factory))], check=True)


@pytest.fixture
def podman_env(tmp_path_factory: pytest.TempPathFactory, runc_ckpt_bin: str) -> Iterator[PodmanEnv]:
    """A fresh private podman with runc-ckpt registered and the busybox image imported."""
    require_tool("conmon")
    require_tool("runc")
    require_tool("criu")
    image_tar = busybox_image_tar(tmp_path_factory)
    # Not under tmp_path: podman refuses a runroot path longer than 50 characters.
    env = PodmanEnv(Path(tempfile.mkdtemp(prefix="rcpe-", dir="/tmp")), runc_ckpt_bin)
    try:
        env.import_image(image_tar)
        yield env
    finally:
        env.teardown()
