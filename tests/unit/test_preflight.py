"""Pre-flight check on restore --import: arch and CRIU-version mismatches refuse before anything is touched.

The archive records the checkpointing host in its manifest (host, versions);
an image in its annotations. A different architecture, or a CRIU here older
than the dump's, is refused with one error line unless --skip-preflight; a
different kernel is shown by inspect but restores.
"""

from __future__ import annotations

import json
import platform
import subprocess

import pytest

from runc_ckpt import cli
from runc_ckpt.archive import reader
from runc_ckpt.metadata import needs
from runc_ckpt.restore import hostpreflight
from runc_ckpt.runtime import hostinfo
from runc_ckpt.runtime.criu import imagereader
from tests.hostile import builder
from tests.hostile.harness import make_target, snapshot
from tests.image_helpers import PODMAN_NAME, oci_layout

SKIP = ("fake-runc.log", "archive.tar", "image")
OTHER_ARCH = "s390x" if hostinfo.goarch() != "s390x" else "amd64"


def _criu_here() -> str:
    out = subprocess.run(["criu", "--version"], capture_output=True, text=True, check=False).stdout
    return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Version:"))


def _archive(t, tmp_path, host: dict, criu: str):
    a = builder.base(str(t.volume))
    a.manifest_override["host"] = host
    a.manifest_override["versions"] = {"runc-ckpt": "test", "runc": "1.1.5", "criu": criu}
    return builder.write(a, tmp_path / "archive.tar")


@pytest.mark.parametrize("host, criu, fragment", [
    ({"arch": OTHER_ARCH, "kernel": platform.release()}, None, f"architecture {OTHER_ARCH} there, {hostinfo.goarch()} here"),
    ({"arch": hostinfo.goarch(), "kernel": platform.release()}, "99.0.0", "CRIU 99.0.0 there"),
])
def test_mismatch_is_refused_then_overridden(host, criu, fragment, tmp_path, runc_ckpt_bin):
    t = make_target(tmp_path, runc_ckpt_bin)
    archive = _archive(t, tmp_path, host, criu or _criu_here())
    before = snapshot(tmp_path, skip=SKIP)
    out = t.restore("--import", str(archive))
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "--skip-preflight" in lines[0], out.stderr
    assert snapshot(tmp_path, skip=SKIP) == before
    assert not [c for c in t.runc_calls() if " restore " in f" {c} "]

    info = subprocess.run([runc_ckpt_bin, "inspect", "--format", "json", str(archive)], capture_output=True,
                          text=True, env=t.env, check=False)
    verdicts = {r["what"]: r["verdict"] for r in json.loads(info.stdout)["compatibility"]}
    assert "mismatch" in verdicts.values()

    out = t.restore("--import", str(archive), "--skip-preflight")
    assert out.returncode == 0, out.stderr
    assert any(" restore " in f" {c} " for c in t.runc_calls())


def test_other_kernel_and_newer_criu_here_restore(tmp_path, runc_ckpt_bin):
    t = make_target(tmp_path, runc_ckpt_bin)
    archive = _archive(t, tmp_path, {"arch": hostinfo.goarch(), "kernel": "5.10.0-old"}, "3.17")
    info = subprocess.run([runc_ckpt_bin, "inspect", "--format", "json", str(archive)], capture_output=True,
                          text=True, env=t.env, check=False)
    verdicts = {r["what"]: r["verdict"] for r in json.loads(info.stdout)["compatibility"]}
    assert verdicts["kernel"] == "differs" and verdicts["CRIU"] == "differs" and verdicts["architecture"] == "same"
    out = t.restore("--import", str(archive))
    assert out.returncode == 0, out.stderr


def test_image_annotations_are_checked_like_podman_writes_them(tmp_path, runc_ckpt_bin):
    """podman's annotations: host.arch in GOARCH, criu.version as an integer."""
    t = make_target(tmp_path, runc_ckpt_bin)
    a = builder.base(str(t.volume))
    a.manifest = False
    data = builder.write(a, tmp_path / "archive.tar", compression="none").read_bytes()
    layout = oci_layout(tmp_path / "image", data, {PODMAN_NAME: builder.CID,
                                                  "io.podman.annotations.checkpoint.host.arch": OTHER_ARCH,
                                                  "io.podman.annotations.checkpoint.criu.version": "40201"},
                        compression="none")
    out = t.restore("--import", f"oci:{layout}:1")
    assert out.returncode != 0 and f"architecture {OTHER_ARCH} there" in out.stderr, out.stderr


@pytest.mark.parametrize(("manifest", "asked"), [
    (None, True),                                                       # podman's archive: the images speak
    ({"needs": {"version": needs.VERSION}}, False),                     # ours: the needs are recorded
])
def test_the_image_reader_is_asked_early_only_when_the_preflight_reads_images(monkeypatch, tmp_path, manifest,
                                                                              asked):
    calls = []
    monkeypatch.setattr(hostpreflight.imagereader, "ask", calls.append)
    staged = reader.Staged(path=str(tmp_path / "a.tar"))
    staged.manifest = manifest
    hostpreflight.prefetch(staged, str(tmp_path))
    assert calls == ([str(tmp_path / "checkpoint")] if asked else [])


@pytest.mark.parametrize(("case", "asked"), [("manifest-mismatch", False), ("benign", True)])
def test_the_early_image_read_waits_for_the_verified_archive(tmp_path, runc_ckpt_bin, monkeypatch, case, asked):
    """The prefetch hands untrusted CRIU images to pycriu: only once the manifest (and the trust policy) has
    accepted them, as the pre-flight's own read always was; a refused archive is never decoded."""
    t = make_target(tmp_path, runc_ckpt_bin)
    archive = (builder.corpus(t.outside, str(t.volume))["manifest-mismatch"].archive if case != "benign"
               else builder.base(str(t.volume)))
    path = builder.write(archive, tmp_path / "archive.tar")
    seen: list[str] = []
    monkeypatch.setattr(imagereader, "start", lambda: None)       # no child: the question is what is asked
    monkeypatch.setattr(imagereader, "ask", seen.append)
    for key in ("RUNC_CKPT_RUNC", "RUNC_CKPT_CONFIG"):
        monkeypatch.setenv(key, t.env[key])
    monkeypatch.delenv("CRIU_CONFIG_FILE", raising=False)
    code = cli.main(["--root", str(t.runc_root), "restore", "--import", str(path), "--bundle", str(t.bundle), "-d",
                     "early-read"])
    assert (code == 0) is asked
    assert bool(seen) is asked
    assert all(s.endswith("/checkpoint") for s in seen)
