"""Policy on the real stack: config precedence, every io.runc-ckpt.* annotation, schema errors, auto-export.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.integration.conftest import Containers, wait_for
from tests.integration.policy_helpers import Stack, inner_names, magic, make_stack, members, start, still_running

STAMP = r"-[0-9]{8}T[0-9]{6}\.[0-9]{6}Z"


@pytest.fixture
def stack(runc_ckpt_bin: str, containers: Containers, tmp_path: Path) -> Stack:
    return make_stack(runc_ckpt_bin, containers.root, tmp_path / "stack")


def test_compression_flag_beats_annotation_beats_config(make_bundle, containers, stack, tmp_path):
    stack.config.write_text("compress: gzip\n")
    b, cid = start(make_bundle, containers)
    out = stack.run("checkpoint", "--leave-running", "--export", str(tmp_path / "a"), cid)
    assert out.returncode == 0, out.stderr
    assert magic(tmp_path / "a") == "gzip"  # config beats the default (zstd)

    b2, cid2 = start(make_bundle, containers, {"io.runc-ckpt.compress": "none"})
    out = stack.run("checkpoint", "--leave-running", "--export", str(tmp_path / "b"), cid2)
    assert out.returncode == 0, out.stderr
    assert magic(tmp_path / "b") == "none"

    out = stack.run("checkpoint", "--leave-running", "--compress", "zstd", "--export", str(tmp_path / "c"), cid2)
    assert out.returncode == 0, out.stderr
    assert magic(tmp_path / "c") == "zstd"  # flag beats annotation


def test_config_from_global_flag_beats_environment(make_bundle, containers, stack, tmp_path):
    stack.config.write_text("compress: gzip\n")
    flagged = tmp_path / "flagged.yaml"
    flagged.write_text("compress: none\n")
    b, cid = start(make_bundle, containers)
    out = stack.run("--config", str(flagged), "checkpoint", "--leave-running", "--export", str(tmp_path / "a"),
                    cid, root=True)
    assert out.returncode == 0, out.stderr
    assert magic(tmp_path / "a") == "none"


def test_runc_boolean_annotations_reach_runc(make_bundle, containers, stack, tmp_path):
    b, cid = start(make_bundle, containers, {"io.runc-ckpt.file-locks": "true",
                                             "io.runc-ckpt.tcp-established": "true"})
    images = tmp_path / "images"
    out = stack.run("checkpoint", "--image-path", str(images), "--work-path", str(tmp_path), cid)
    assert out.returncode == 0, out.stderr
    line = stack.runc_calls("checkpoint")[-1]
    assert "--file-locks" in line.split() and "--tcp-established" in line.split()
    before = b.counter()
    out = stack.run("restore", "--detach", "--bundle", str(b.path), "--image-path", str(images), cid)
    assert out.returncode == 0, out.stderr
    line = stack.runc_calls("restore")[-1]
    assert "--file-locks" in line.split() and "--tcp-established" in line.split()
    wait_for(lambda: b.counter() not in (0, before), what="restored counter to move")


def test_flag_false_beats_boolean_annotation(make_bundle, containers, stack, tmp_path):
    b, cid = start(make_bundle, containers, {"io.runc-ckpt.file-locks": "true"})
    out = stack.run("checkpoint", "--leave-running", "--file-locks=false", "--image-path", str(tmp_path / "i"),
                    cid)
    assert out.returncode == 0, out.stderr
    assert "--file-locks" not in stack.runc_calls("checkpoint")[-1].split()


def test_ignore_annotations(make_bundle, containers, stack, tmp_path):
    stack.config.write_text(f"volume_roots: [{tmp_path / 'volumes'}]\n")
    b, cid = start(make_bundle, containers, {"io.runc-ckpt.compress": "none"}, volumes={"vol1": "/data"})
    (b.volumes["vol1"] / "v.txt").write_text("volume data")
    out = stack.run("checkpoint", "--leave-running", "--export", str(tmp_path / "full"), cid)
    assert out.returncode == 0, out.stderr
    full = members(tmp_path / "full")
    assert "volumes/vol1.tar" in full and "rootfs-diff.tar" in full

    b2, cid2 = start(make_bundle, containers, {"io.runc-ckpt.ignore-volumes": "true",
                                               "io.runc-ckpt.ignore-rootfs": "1"}, volumes={"vol2": "/data"})
    out = stack.run("checkpoint", "--leave-running", "--export", str(tmp_path / "bare"), cid2)
    assert out.returncode == 0, out.stderr
    bare = members(tmp_path / "bare")
    assert "checkpoint/inventory.img" in bare
    assert not any(n.startswith("volumes/") for n in bare)
    assert "rootfs-diff.tar" not in bare


def test_volumes_annotation_archives_extra_bind_mounts(make_bundle, containers, stack, tmp_path):
    host_dir = tmp_path / "host-data"
    host_dir.mkdir()
    (host_dir / "marker.txt").write_text("extra")
    b = make_bundle()
    spec = b.config()
    spec["mounts"].append({"destination": "/extra", "type": "bind", "source": str(host_dir),
                           "options": ["rbind", "rw"]})
    spec["annotations"] = {"io.runc-ckpt.volumes": "/extra", "io.runc-ckpt.compress": "none"}
    b.write_config(spec)
    cid = containers.run(b)
    wait_for(lambda: b.counter() > 3, what="counter to start")
    out = stack.run("checkpoint", "--leave-running", "--export", str(tmp_path / "a"), cid)
    assert out.returncode == 0, out.stderr
    got = members(tmp_path / "a")
    volume_tars = [n for n in got if n.startswith("volumes/") and n.endswith(".tar")]

    assert any(any(name.endswith("marker.txt") for name in inner_names(got[n])) for n in volume_tars), volume_tars


@pytest.mark.parametrize("annotation,value", [
    ("io.runc-ckpt.compress", "lz4"), ("io.runc-ckpt.file-locks", "maybe"), ("io.runc-ckpt.retention", "-1"),
    ("io.runc-ckpt.export-dir", "/etc"), ("io.runc-ckpt.volumes", "relative"), ("io.runc-ckpt.hooks", "a/b"),
    ("io.runc-ckpt.compression", "zstd"), ("io.runc-ckpt.volumes", "/not-mounted"),
    ("io.runc-ckpt.volumes", "/proc"),
])
def test_bad_annotation_fails_before_the_container_is_touched(make_bundle, containers, stack, tmp_path,
                                                              annotation, value):
    b, cid = start(make_bundle, containers, {annotation: value})
    out = stack.run("checkpoint", "--image-path", str(tmp_path / "i"), "--work-path", str(tmp_path), cid)
    assert out.returncode == 1
    assert f"annotation {annotation}" in out.stderr, out.stderr
    assert stack.runc_calls("checkpoint") == []
    still_running(containers, b, cid)


@pytest.mark.parametrize("text,key", [("compress: lz4\n", "compress"), ("retention: many\n", "retention"),
                                      ("exportdir: /x\n", "exportdir"), ("compress: [\n", None)])
def test_bad_config_fails_naming_file_and_key(make_bundle, containers, stack, tmp_path, text, key):
    stack.config.write_text(text)
    b, cid = start(make_bundle, containers)
    out = stack.run("checkpoint", "--image-path", str(tmp_path / "i"), cid)
    assert out.returncode == 1
    assert f"config file {stack.config}: " + (f"{key}: " if key else "not valid YAML") in out.stderr, out.stderr
    assert len([line for line in out.stderr.splitlines() if "level=error" in line]) == 1
    still_running(containers, b, cid)


def test_auto_export_from_config_with_retention_on_a_bare_checkpoint(make_bundle, containers, stack, tmp_path):
    """podman/CRI-O shape: `checkpoint --image-path <dir>/checkpoint --work-path <dir> ID`."""
    exports = tmp_path / "exports"
    stack.config.write_text(f"export_dir: {exports}\nretention: 2\n")
    b, cid = start(make_bundle, containers)
    for i in range(3):
        d = tmp_path / f"ckpt-{i}"
        d.mkdir()
        out = stack.run("checkpoint", "--leave-running", "--image-path", f"{d}/checkpoint", "--work-path", str(d),
                        cid)
        assert out.returncode == 0, out.stderr
        # The caller gets exactly runc's output: images and CRIU's logs stay where it asked.
        assert (d / "checkpoint" / "inventory.img").is_file() and (d / "dump.log").is_file()
        names = sorted(p.name for p in exports.iterdir()) if exports.is_dir() else []
        assert len(names) == min(i + 1, 2), names
        assert all(re.fullmatch(re.escape(cid) + STAMP + r"\.tar\.zst", n) for n in names), names
    still_running(containers, b, cid)


def test_auto_export_from_annotation_inside_export_roots(make_bundle, containers, stack, tmp_path):
    roots = tmp_path / "exports"
    stack.config.write_text(f"export_roots: [{roots}]\n")
    b, cid = start(make_bundle, containers, {"io.runc-ckpt.export-dir": f"{roots}/mine",
                                             "io.runc-ckpt.compress": "gzip", "io.runc-ckpt.retention": "1"})
    for i in range(2):
        out = stack.run("checkpoint", "--leave-running", "--image-path", str(tmp_path / f"i{i}"), cid)
        assert out.returncode == 0, out.stderr
    names = sorted(p.name for p in (roots / "mine").iterdir()) if (roots / "mine").is_dir() else []
    assert len(names) == 1 and re.fullmatch(re.escape(cid) + STAMP + r"\.tar\.gz", names[0]), names
    assert magic(roots / "mine" / names[0]) == "gzip"


def test_auto_export_off_by_empty_annotation(make_bundle, containers, stack, tmp_path):
    exports = tmp_path / "exports"
    stack.config.write_text(f"export_dir: {exports}\n")
    b, cid = start(make_bundle, containers, {"io.runc-ckpt.export-dir": ""})
    out = stack.run("checkpoint", "--leave-running", "--image-path", str(tmp_path / "i"), cid)
    assert out.returncode == 0, out.stderr
    assert not exports.exists() or list(exports.iterdir()) == []
