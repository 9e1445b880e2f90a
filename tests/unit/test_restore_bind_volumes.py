"""restore --import of bind mounts that io.runc-ckpt.volumes archived as volumes/bind-<path>.tar.

The archive's name is mapped back through the archived spec and the manifest's
bind_mounts (archived_as -> destination) to the source that destination has in
the target bundle's config.json; the same safety rules as for named volumes
hold. Refusals leave the whole target as it was and never reach runc.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.hostile import builder
from tests.hostile.harness import Target, make_target, snapshot

SKIP = ("fake-runc.log", "archive.tar")
NAME = "bind-my%2ddata"          # volumes.bind_volume_name("/my-data")


def _archive(t: Target, inner: bytes, listed: dict | None = None, manifest: bool = True) -> Path:
    """Our archive of a container that bind-mounted a host dir at /my-data and listed it in the annotation."""
    spec = builder.spec(None)
    spec["mounts"].append({"destination": "/my-data", "type": "bind", "source": "/old-host/data",
                           "options": ["rbind", "rw"]})
    spec["annotations"] = {"io.runc-ckpt.volumes": "/my-data"}
    a = builder.base(None)
    a.manifest = manifest
    a.members[0] = builder.f("spec.dump", json.dumps(spec).encode(), mode=0o600)
    a.add(f"volumes/{NAME}.tar", inner)
    a.manifest_override["bind_mounts"] = [
        listed if listed is not None else
        {"destination": "/my-data", "source": "/old-host/data", "archived_as": NAME}]
    return builder.write(a, t.tmp / "archive.tar")


def _bundle_config(t: Target, source: Path | None) -> None:
    """The target host's config.json: /my-data comes from `source` (None: no such mount)."""
    spec = builder.spec(None) | {"root": {"path": "rootfs"}}
    if source is not None:
        spec["mounts"].append({"destination": "/my-data/", "type": "bind", "source": str(source),
                               "options": ["rbind"]})
    (t.bundle / "config.json").write_text(json.dumps(spec))


def _restored(t: Target) -> bool:
    return any(" restore " in f" {c} " for c in t.runc_calls())


def test_extracted_into_the_bundle_spec_source(tmp_path, runc_ckpt_bin):
    t = make_target(tmp_path, runc_ckpt_bin)
    target = tmp_path / "new-host" / "data"           # missing: created, as for a named volume
    _bundle_config(t, target)
    config_before = (t.bundle / "config.json").read_text()
    archive = _archive(t, builder.tar_bytes([builder.d("."), builder.d("sub", mode=0o750),
                                             builder.f("sub/marker", b"extra\n", mode=0o640)]))
    out = t.restore("--import", str(archive))
    assert out.returncode == 0, out.stderr
    assert (target / "sub" / "marker").read_text() == "extra\n"
    assert (target / "sub").stat().st_mode & 0o777 == 0o750
    assert (t.bundle / "config.json").read_text() == config_before
    assert not [n for n in target.iterdir() if n.name.startswith(".runc-ckpt")]
    assert not Path("/old-host").exists()
    assert _restored(t)


def test_ignore_volumes_leaves_the_source_alone(tmp_path, runc_ckpt_bin):
    t = make_target(tmp_path, runc_ckpt_bin)
    target = tmp_path / "data"
    target.mkdir()
    (target / "mine").write_text("kept")
    _bundle_config(t, target)
    out = t.restore("--import", str(_archive(t, builder.tar_bytes([builder.f("marker", b"x")]))),
                    "--ignore-volumes")
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in target.iterdir()) == ["mine"]


@pytest.mark.parametrize("case,expect", [
    ("holds-data", "already holds data"),
    ("not-in-manifest", f"volume {NAME} is not listed in its manifest as the bind mount at /my-data"),
    ("manifest-elsewhere", f"volume {NAME} is not listed in its manifest"),
    ("no-manifest", f"volume {NAME} is not listed in its manifest"),
    ("no-such-mount-here", f"archive volume {NAME}: no bind mount for it"),
    ("device-node", "device"),
    ("traversal", "'..'"),
    ("absolute", "absolute"),
])
def test_refused_with_nothing_written(case, expect, tmp_path, runc_ckpt_bin):
    t = make_target(tmp_path, runc_ckpt_bin)
    target = t.outside / "data"
    if case == "holds-data":
        target.mkdir()
        (target / "mine").write_text("kept")
    _bundle_config(t, None if case == "no-such-mount-here" else target)
    inner = {"device-node": [builder.dev("null")],
             "traversal": [builder.f("../escape", b"pwned")],
             "absolute": [builder.f(f"{t.outside}/escape", b"pwned")]}.get(case, [builder.f("marker", b"x")])
    listed = {"not-in-manifest": {"destination": "/my-data", "source": "/old-host/data", "archived_as": None},
              "manifest-elsewhere": {"destination": "/etc", "source": "/old-host/data", "archived_as": NAME}}
    archive = _archive(t, builder.tar_bytes(inner), listed.get(case), manifest=case != "no-manifest")
    before = snapshot(tmp_path, skip=SKIP)

    out = t.restore("--import", str(archive))

    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "level=error" in lines[0] and expect in lines[0], out.stderr
    assert snapshot(tmp_path, skip=SKIP) == before
    assert not _restored(t)
