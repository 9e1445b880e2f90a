"""inspect: what an archive holds, for ours and podman-shaped ones, and a failed verification."""

from __future__ import annotations

import json
import subprocess

from tests.hostile import builder


def _inspect(runc_ckpt_bin, *args):
    return subprocess.run([runc_ckpt_bin, "inspect", *args], capture_output=True, text=True, check=False)


def test_ours_in_json(tmp_path, runc_ckpt_bin):
    a = builder.base("/v/vol1/_data", volume_tar=builder.tar_bytes([builder.f("v", b"12345")]))
    a.manifest_override["options"] = {"leave_running": True}
    path = builder.write(a, tmp_path / "a.tar.zst")
    out = _inspect(runc_ckpt_bin, "--format", "json", str(path))
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["engine"] == "runc-ckpt"
    assert info["id"] == builder.CID and info["runtime"] == "runc"
    assert info["sizes"]["memory_pages"] == 8192
    assert info["sizes"]["volumes"]["vol1"] > 0
    assert info["options"] == {"leave_running": True}
    assert info["verified"] is True and info["compression"] == "zstd"


def test_podman_shaped_text(tmp_path, runc_ckpt_bin):
    a = builder.base("/v")
    a.manifest = False
    spec = builder.spec()
    spec["annotations"] = {"io.container.manager": "libpod"}
    a.members[0] = builder.f("spec.dump", json.dumps(spec).encode())
    path = builder.write(a, tmp_path / "p.tar.gz", compression="gzip")
    out = _inspect(runc_ckpt_bin, str(path))
    assert out.returncode == 0, out.stderr
    assert "Engine:" in out.stdout and "podman" in out.stdout
    assert "no manifest" in out.stdout


def test_engine_from_annotation():
    from runc_ckpt.archive.reader import Staged
    from runc_ckpt.archive.summary import engine_of
    staged = Staged("x")
    staged.spec = {"annotations": {"io.container.manager": "cri-o"}}
    assert engine_of(staged) == "CRI-O"
    staged.spec = {}
    assert engine_of(staged) == "containerd"
    staged.manifest_raw = b"{}"
    assert engine_of(staged) == "runc-ckpt"


def test_verification_failure_exits_non_zero(tmp_path, runc_ckpt_bin):
    a = builder.base("/v")
    a.tamper = lambda members: members.__setitem__(
        3, builder.f("checkpoint/inventory.img", b"changed", mode=0o600))
    path = builder.write(a, tmp_path / "bad.tar")
    out = _inspect(runc_ckpt_bin, str(path))
    assert out.returncode == 1
    assert "does not match its manifest" in out.stdout
    assert out.stderr.count("level=error") == 1


def test_not_an_archive(tmp_path, runc_ckpt_bin):
    p = tmp_path / "x"
    p.write_text("nope")
    out = _inspect(runc_ckpt_bin, str(p))
    assert out.returncode == 1 and "not a checkpoint archive" in out.stderr
