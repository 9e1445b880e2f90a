"""restore --import and inspect of checkpoint images: the hostile corpus as image layers, mismatches, bad input.

An image layer is as untrusted as an archive: every case of the hostile
corpus, wrapped as the layer of an oci: layout and of an oci-archive:, is
refused with one error line and nothing written. Images that lie about
their layer (digest, size, manifest annotation, container name), that are
not checkpoint images, bad references, an unreachable registry and a
missing skopeo each give one clear error.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.hostile import builder
from tests.hostile.harness import make_target, snapshot
from tests.image_helpers import PODMAN_NAME, free_port, oci_layout

SKIP = ("fake-runc.log", "archive.tar", "image", "image.tar")


def _cases() -> list[str]:
    return sorted(builder.corpus(Path("/x"), "/x/v").keys())


def _oci_archive(layout: Path, path: Path) -> Path:
    with tarfile.open(path, "w") as tar:
        for name in sorted(os.listdir(layout)):
            tar.add(layout / name, arcname=name)
    return path


def _one_error(out: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert out.returncode != 0, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "level=error" in lines[0]
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("transport", ["oci", "oci-archive"])
@pytest.mark.parametrize("case_name", _cases())
def test_hostile_layer_is_refused_and_nothing_is_written(case_name, transport, tmp_path, runc_ckpt_bin):
    t = make_target(tmp_path, runc_ckpt_bin)
    case = builder.corpus(t.outside, str(t.volume))[case_name]
    if case.plant:
        case.plant(t.rootfs, t.outside)
    archive = builder.write(case.archive, tmp_path / "archive.tar", compression=case.compression, cut=case.cut)
    layout = oci_layout(tmp_path / "image", archive.read_bytes(), {PODMAN_NAME: builder.CID},
                        compression=case.compression if case.compression in ("zstd", "gzip") else "none")
    ref = f"oci:{layout}:1"
    if transport == "oci-archive":
        ref = f"oci-archive:{_oci_archive(layout, tmp_path / 'image.tar')}:1"
    before = snapshot(tmp_path, skip=SKIP)

    out = t.restore("--import", ref)

    _one_error(out, case.expect)
    assert snapshot(tmp_path, skip=SKIP) == before
    assert not [c for c in t.runc_calls() if " restore " in f" {c} "]


def _good(t, tmp_path: Path, **kw) -> tuple[Path, bytes]:
    a = builder.base(str(t.volume), volume_tar=builder.tar_bytes([builder.f("v", b"volume data\n")]))
    archive = builder.write(a, tmp_path / "archive.tar", compression="none")
    data = archive.read_bytes()
    with tarfile.open(archive) as tar:
        man = tar.extractfile("runc-ckpt.manifest.json").read()  # type: ignore[union-attr]
    ann = {PODMAN_NAME: builder.CID, "io.runc-ckpt.manifest.digest": "sha256:" + hashlib.sha256(man).hexdigest()}
    ann.update(kw.pop("annotations", {}))
    return oci_layout(tmp_path / "image", data, ann, compression="none", **kw), data


def test_benign_image_restores(tmp_path, runc_ckpt_bin):
    t = make_target(tmp_path, runc_ckpt_bin)
    layout, _ = _good(t, tmp_path)
    out = t.restore("--import", f"oci:{layout}:1")
    assert out.returncode == 0, out.stderr
    assert (t.rootfs / "newfile").read_text() == "new\n"
    assert (t.volume / "v").read_text() == "volume data\n"
    assert not [n for n in os.listdir(t.bundle) if n.startswith(".runc-ckpt")]


def _swap_layer(layout: Path, data: bytes) -> None:
    index = json.loads((layout / "index.json").read_text())
    mpath = layout / "blobs" / "sha256" / index["manifests"][0]["digest"][7:]
    layer = json.loads(mpath.read_text())["layers"][0]["digest"][7:]
    (layout / "blobs" / "sha256" / layer).write_bytes(data)


@pytest.mark.parametrize("break_it, fragment", [
    ("layer-digest", "does not match its digest"),
    ("manifest-annotation", "is not the one its io.runc-ckpt.manifest.digest annotation names"),
    ("name-annotation", "but the layer's config.dump names"),
    ("not-checkpoint", "is not a checkpoint image"),
    ("two-layers", "2 layers; a checkpoint image has exactly one"),
    ("wrong-tag", "has no image tagged 'nope'"),
    ("bad-schema", "manifest: schemaVersion: 2 was expected"),
    ("missing-layout", "does not exist"),
    ("digest-traversal", "does not match"),
    ("md5-digest", "is not a sha256 digest"),
])
def test_lying_images_are_refused(break_it, fragment, tmp_path, runc_ckpt_bin):
    t = make_target(tmp_path, runc_ckpt_bin)
    ref_tag = "1"
    if break_it == "manifest-annotation":
        layout, _ = _good(t, tmp_path, annotations={"io.runc-ckpt.manifest.digest": "sha256:" + "1" * 64})
    elif break_it == "name-annotation":
        layout, _ = _good(t, tmp_path, annotations={PODMAN_NAME: "someone-else"})
    elif break_it == "not-checkpoint":
        layout = oci_layout(tmp_path / "image", b"x" * 1024, {"org.example": "plain"})
    elif break_it == "two-layers":
        layout, _ = _good(t, tmp_path, layers=2)
    elif break_it == "bad-schema":
        layout, _ = _good(t, tmp_path, manifest_edit=lambda m: m.update(schemaVersion=1))
    elif break_it == "missing-layout":
        layout = tmp_path / "image"
    elif break_it in ("digest-traversal", "md5-digest"):
        layout, _ = _good(t, tmp_path)
        index = json.loads((layout / "index.json").read_text())
        index["manifests"][0]["digest"] = ("sha256:../../../outside/victim" if break_it == "digest-traversal"
                                           else "md5:" + "0" * 32)
        (layout / "index.json").write_text(json.dumps(index))
    else:
        layout, data = _good(t, tmp_path)
        if break_it == "layer-digest":
            assert b"volume data" in data
            _swap_layer(layout, data.replace(b"volume data", b"VOLUME data"))
        ref_tag = "nope" if break_it == "wrong-tag" else "1"
    before = snapshot(tmp_path, skip=SKIP)
    out = t.restore("--import", f"oci:{layout}:{ref_tag}")
    _one_error(out, fragment)
    assert snapshot(tmp_path, skip=SKIP) == before
    ins = subprocess.run([runc_ckpt_bin, "inspect", f"oci:{layout}:{ref_tag}"], capture_output=True, text=True,
                         env=t.env, check=False)
    assert ins.returncode != 0


def test_oci_archive_with_a_foreign_member_is_refused(tmp_path, runc_ckpt_bin):
    t = make_target(tmp_path, runc_ckpt_bin)
    layout, _ = _good(t, tmp_path)
    path = _oci_archive(layout, tmp_path / "image.tar")
    with tarfile.open(path, "a") as tar:
        info = tarfile.TarInfo("../escape")
        tar.addfile(info)
    _one_error(t.restore("--import", f"oci-archive:{path}:1"), "'..'")
    assert not (tmp_path / "escape").exists()
    assert not [n for n in os.listdir(t.bundle) if n.startswith(".runc-ckpt")]


@pytest.mark.parametrize("ref, fragment", [
    ("docker:/x", "docker references are docker://HOST/REPO"),
    ("http://example.com/x", "unknown transport"),
    ("oci:", "needs a path"),
])
def test_bad_references_give_one_error(ref, fragment, tmp_path, runc_ckpt_bin):
    t = make_target(tmp_path, runc_ckpt_bin)
    _one_error(t.restore("--import", ref), fragment)


def test_missing_skopeo_gives_one_error(tmp_path, runc_ckpt_bin):
    t = make_target(tmp_path, runc_ckpt_bin)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "readlink").symlink_to(require_tool("readlink"))
    t.env["PATH"] = str(bindir)
    _one_error(t.restore("--import", "docker://127.0.0.1:1/ckpt:1"), "skopeo is not installed")


def test_unreachable_registry_gives_one_error(tmp_path, runc_ckpt_bin):
    require_tool("skopeo")
    t = make_target(tmp_path, runc_ckpt_bin)
    registries = tmp_path / "registries.conf"
    port = free_port()
    registries.write_text(f'[[registry]]\nlocation = "127.0.0.1:{port}"\ninsecure = true\n')
    t.env["CONTAINERS_REGISTRIES_CONF"] = str(registries)
    before = snapshot(tmp_path, skip=SKIP)
    _one_error(t.restore("--import", f"docker://127.0.0.1:{port}/ckpt:1"), "skopeo copy")
    assert snapshot(tmp_path, skip=SKIP) == before


def test_inspect_says_when_only_runc_ckpt_can_restore(tmp_path, runc_ckpt_bin):
    t = make_target(tmp_path, runc_ckpt_bin)
    layout, _ = _good(t, tmp_path)
    for arg in (f"oci:{layout}:1", str(tmp_path / "archive.tar")):
        out = subprocess.run([runc_ckpt_bin, "inspect", "--format", "json", arg], capture_output=True, text=True,
                             env=t.env, check=False)
        doc = json.loads(out.stdout)
        assert doc["restorable_by"] == ["runc-ckpt"] and "only runc-ckpt" in doc["restore_note"]
        text = subprocess.run([runc_ckpt_bin, "inspect", arg], capture_output=True, text=True, env=t.env,
                              check=False).stdout
        assert "Restorable by:" in text and "only runc-ckpt can restore it" in text
    log = subprocess.run([runc_ckpt_bin, "inspect", "--log", f"oci:{layout}:1"], capture_output=True, text=True,
                         env=t.env, check=False)
    _one_error(log, "keeps no CRIU dump.log")


def test_image_build_of_a_containerd_cri_archive(tmp_path, runc_ckpt_bin):
    """containerd's CRI checkpoint (status.dump, status; names only in spec.dump's annotations) builds and restores."""
    t = make_target(tmp_path, runc_ckpt_bin)
    a = builder.Archive(manifest=False)
    spec = builder.spec(str(t.volume))
    spec["annotations"] = {"io.kubernetes.cri.container-name": "ctrd-web",
                           "io.kubernetes.cri.image-name": "docker.io/library/busybox:latest"}
    a.add("spec.dump", json.dumps(spec).encode())
    a.add("config.dump", b"{}")
    a.add("status.dump", json.dumps({"id": "x", "state": "CONTAINER_RUNNING"}).encode())
    a.add("status", json.dumps({"metadata": {"name": "ctrd-web"}}).encode())
    a.add("checkpoint/inventory.img", b"\x16\x31\x31\x58fake-inventory")
    a.add("checkpoint/pages-1.img", b"\0" * 8192)
    a.add("rootfs-diff.tar", builder.tar_bytes([builder.f("newfile", b"new\n")]))
    archive = builder.write(a, tmp_path / "archive.tar", compression="gzip")
    layout = tmp_path / "image"
    out = subprocess.run([runc_ckpt_bin, "image", "build", "-c", "zstd", str(archive), f"oci:{layout}:ck"],
                         capture_output=True, text=True, env=t.env, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"oci:{layout}:ck"
    doc = json.loads(subprocess.run([runc_ckpt_bin, "inspect", "--format", "json", f"oci:{layout}:ck"],
                                    capture_output=True, text=True, env=t.env, check=False).stdout)
    ann = doc["image"]["annotations"]
    assert ann["io.kubernetes.cri-o.annotations.checkpoint.name"] == "ctrd-web"
    assert ann["org.criu.checkpoint.rootfsImageName"] == "docker.io/library/busybox:latest"
    assert doc["compression"] == "zstd"
    out = t.restore("--import", f"oci:{layout}:ck", cid="ctrd-web")
    assert out.returncode == 0, out.stderr
    assert (t.rootfs / "newfile").read_text() == "new\n"


@pytest.mark.parametrize("case_name", [c for c in _cases() if c.startswith(("outer-", "manifest-", "duplicate-",
                                                                             "truncated-", "oversized-"))])
def test_image_build_refuses_a_hostile_archive(case_name, tmp_path, runc_ckpt_bin):
    """The archive's own layout is checked before any image is written (its inner trees again at restore)."""
    t = make_target(tmp_path, runc_ckpt_bin)
    case = builder.corpus(t.outside, str(t.volume))[case_name]
    archive = builder.write(case.archive, tmp_path / "archive.tar", compression=case.compression, cut=case.cut)
    out = subprocess.run([runc_ckpt_bin, "image", "build", str(archive), f"oci:{tmp_path / 'image'}:ck"],
                         capture_output=True, text=True, env=t.env, check=False)
    _one_error(out, case.expect)
    assert not (tmp_path / "image").exists()
