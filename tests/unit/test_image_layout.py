"""The OCI layout runc-ckpt writes is valid by the image-spec schemas and reads back; interruptions leave nothing.

Also: --create-image's reference is refused before any container is looked
at, and a SIGTERM while skopeo copies leaves no scratch copy behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.image import oci, ociarchive
from runc_ckpt.settings import config
from tests.conftest import require_tool
from tests.hostile.harness import make_target, snapshot


def _layer(directory, data: bytes = b"layer bytes") -> oci.Layer:
    path = os.path.join(directory, ".layer")
    with open(path, "wb") as f:
        f.write(data)
    digest = hashlib.sha256(data).hexdigest()
    return oci.Layer(path, digest, digest, len(data), "none")


def test_write_then_read_and_the_documents_validate(tmp_path):
    layout = str(tmp_path / "img")
    ann = {"io.podman.annotations.checkpoint.name": "web"}
    d1 = oci.write(layout, _layer(oci.layer_dir(layout)), ann, "1", "2026-01-01T00:00:00Z", "amd64")
    d2 = oci.write(layout, _layer(oci.layer_dir(layout), b"other"), ann, "2", "2026-01-01T00:00:00Z", "amd64")
    assert d1 != d2
    index = json.loads((tmp_path / "img" / "index.json").read_text())
    config.validate(index, "oci-image-index.schema.json", "index")
    assert [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]] == ["1", "2"]
    img = oci.read(layout, "1")
    assert img.annotations == ann and img.manifest_digest == d1
    assert Path(img.layer_path).read_bytes() == b"layer bytes"
    assert img.config["rootfs"]["diff_ids"] == [f"sha256:{img.layer_sha256}"]
    with pytest.raises(RuncCkptError, match="holds 2 images"):
        oci.read(layout, None)
    # the same tag again replaces the image in the index
    oci.write(layout, _layer(oci.layer_dir(layout), b"third"), ann, "1", "2026-01-01T00:00:00Z", "amd64")
    assert len(json.loads((tmp_path / "img" / "index.json").read_text())["manifests"]) == 2
    assert Path(oci.read(layout, "1").layer_path).read_bytes() == b"third"


def test_oci_archive_pack_unpack(tmp_path):
    layout = str(tmp_path / "img")
    oci.write(layout, _layer(oci.layer_dir(layout)), {"a": "b"}, "1", "2026-01-01T00:00:00Z", "amd64")
    ociarchive.pack(layout, str(tmp_path / "img.tar"))
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    out = tmp_path / "out"
    out.mkdir()
    ociarchive.unpack(str(tmp_path / "img.tar"), str(out))
    assert oci.read(str(out), "1").annotations == {"a": "b"}


@pytest.mark.parametrize("member", ["blobs/sha256/notadigest", "etc/passwd", "blobs/sha256/" + "a" * 64 + "/x"])
def test_oci_archive_refuses_foreign_members(member, tmp_path):
    path = tmp_path / "bad.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo(member)
        tar.addfile(info)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(RuncCkptError, match="not part of an OCI image layout"):
        ociarchive.unpack(str(path), str(out))
    assert list(out.rglob("*")) == [] or all(p.is_dir() for p in out.rglob("*"))


@pytest.mark.parametrize("args, fragment", [
    (["--create-image", "http://x/y", "c1"], "unknown transport"),
    (["--create-image", "oci:/nonexistent-dir/sub", "c1"], "does not exist"),
    (["--create-image", "oci:/x", "--export", "/tmp/x.tar", "c1"], "cannot be used together"),
    (["--ignore-volumes", "c1"], "only works with --export or --create-image"),
])
def test_create_image_flags_are_refused_before_any_container(args, fragment, tmp_path, runc_ckpt_bin):
    t = make_target(tmp_path, runc_ckpt_bin)
    out = subprocess.run([runc_ckpt_bin, "--root", str(t.runc_root), "checkpoint", *args], capture_output=True,
                         text=True, env=t.env, check=False)
    assert out.returncode != 0 and fragment in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    # Nothing but the read-only `runc state` that commands.checkpoint asks ahead (runtime.containerstate.prefetch)
    assert [c for c in t.runc_calls() if not c.endswith(" state c1")] == []


def test_sigterm_while_skopeo_copies_leaves_no_scratch(tmp_path, runc_ckpt_bin):
    t = make_target(tmp_path, runc_ckpt_bin)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "readlink").symlink_to(require_tool("readlink"))
    started = tmp_path / "skopeo-started"
    (bindir / "skopeo").write_text(f"#!/bin/sh\ntouch {started}\nexec sleep 60\n")
    (bindir / "skopeo").chmod(0o755)
    t.env["PATH"] = f"{bindir}:{os.environ['PATH']}"
    before = snapshot(tmp_path, skip=("fake-runc.log", "skopeo-started", "bin"))
    proc = subprocess.Popen([runc_ckpt_bin, "--root", str(t.runc_root), "restore", "--import",
                             "docker://127.0.0.1:1/ckpt:1", "--bundle", str(t.bundle), "-d", "c1"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=t.env)
    deadline = time.monotonic() + 30
    while not started.exists():
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert len(err.strip().splitlines()) == 1 and "interrupted by SIGTERM" in err, err
    assert snapshot(tmp_path, skip=("fake-runc.log", "skopeo-started", "bin")) == before
    assert not [c for c in t.runc_calls() if " restore " in f" {c} "]


def _write_tag(args: tuple[str, int]) -> str:
    layout, n = args
    directory = oci.layer_dir(layout)
    data = f"layer {n}".encode()
    path = os.path.join(directory, f".layer-{n}")
    Path(path).write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    return oci.write(layout, oci.Layer(path, digest, digest, len(data), "none"), {}, f"t{n}",
                     "2026-01-01T00:00:00Z", "amd64")


def test_concurrent_writers_of_one_layout_keep_every_tag(tmp_path):
    import multiprocessing
    layout = str(tmp_path / "img")
    oci.layer_dir(layout)
    with multiprocessing.get_context("fork").Pool(4) as pool:
        pool.map(_write_tag, [(layout, n) for n in range(16)])
    index = json.loads((tmp_path / "img" / "index.json").read_text())
    tags = sorted(m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"])
    assert tags == sorted(f"t{n}" for n in range(16))
    for n in range(16):
        assert Path(oci.read(layout, f"t{n}").layer_path).read_bytes() == f"layer {n}".encode()
