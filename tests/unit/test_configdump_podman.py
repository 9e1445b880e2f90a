"""config.dump is podman's when the image is known, so `podman container restore` takes the archive.

Known: a podman-made container (its storage's containers.json records the
image) or a bundle annotated with an image podman's storage holds
(images.json). Unknown: the fields stay out and inspect says only
runc-ckpt can restore it.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from runc_ckpt.metadata import configdump
from runc_ckpt.runtime.containerstate import ContainerState

CID = "a" * 64
IMAGE_ID = "b" * 64


def _storage(tmp_path):
    graph = tmp_path / "root"
    ctr = graph / "overlay-containers"
    bundle = ctr / CID / "userdata"
    bundle.mkdir(parents=True)
    meta = json.dumps({"image-name": "localhost/busybox:test", "image-id": IMAGE_ID, "name": "web"})
    (ctr / "containers.json").write_text(json.dumps([{"id": CID, "names": ["web"], "image": IMAGE_ID,
                                                      "metadata": meta}]))
    (graph / "overlay-images").mkdir()
    (graph / "overlay-images" / "images.json").write_text(json.dumps([{"id": IMAGE_ID,
                                                                       "names": ["localhost/busybox:test"]}]))
    conf = tmp_path / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{graph}"\n')
    return graph, bundle, conf


def _spec(volume_source: str) -> dict:
    return {"mounts": [{"destination": "/data", "type": "bind", "source": volume_source,
                        "options": ["rbind", "rw", "nosuid"]}]}


def _state(bundle) -> ContainerState:
    return ContainerState(CID, "running", str(bundle), str(bundle / "rootfs"), "2026-01-01T00:00:00Z", 1, {})


def test_podman_made_container_gets_podmans_fields(tmp_path):
    graph, bundle, _ = _storage(tmp_path)
    vol = graph / "volumes" / "vol1" / "_data"
    st = _state(bundle)
    roots = configdump.volume_roots(st, [])
    assert roots == [str(graph / "volumes")]
    dump = configdump.config_dump(st, _spec(str(vol)), datetime.now(timezone.utc), roots)
    assert dump["name"] == "web"
    assert dump["rootfsImageID"] == IMAGE_ID and dump["rootfsImageName"] == "localhost/busybox:test"
    assert dump["namedVolumes"] == [{"volumeName": "vol1", "dest": "/data", "options": ["rbind", "rw", "nosuid"]}]
    assert configdump.podman_restorable(dump)


def test_annotated_bundle_with_an_image_podman_holds(tmp_path, monkeypatch):
    _, _, conf = _storage(tmp_path)
    monkeypatch.setenv("CONTAINERS_STORAGE_CONF", str(conf))
    bundle = tmp_path / "plain"
    spec = {"annotations": {"io.runc-ckpt.image": "localhost/busybox:test"}}
    dump = configdump.config_dump(_state(bundle), spec, datetime.now(timezone.utc), [])
    assert dump["rootfsImageID"] == IMAGE_ID
    assert configdump.podman_restorable(dump)


def test_unknown_image_leaves_podman_fields_out(tmp_path, monkeypatch):
    _, _, conf = _storage(tmp_path)
    monkeypatch.setenv("CONTAINERS_STORAGE_CONF", str(conf))
    spec = {"annotations": {"io.runc-ckpt.image": "localhost/not-here:1"}}
    dump = configdump.config_dump(_state(tmp_path / "plain"), spec, datetime.now(timezone.utc), [])
    assert "rootfsImageID" not in dump
    assert not configdump.podman_restorable(dump)
