"""Test helpers for checkpoint images: an OCI layout made by hand, and a private registry.

The layout is written here with hashlib and json only, independent of
runc_ckpt.image, so a test can make exactly the (well-formed or broken)
image it needs. The registry is Debian's docker-registry binary started on
127.0.0.1 with its own config and storage on a free port, and a
registries.conf marking it insecure (plain HTTP) for skopeo.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import require_tool

PODMAN_NAME = "io.podman.annotations.checkpoint.name"
LAYER_MT = {"zstd": "application/vnd.oci.image.layer.v1.tar+zstd", "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
            "none": "application/vnd.oci.image.layer.v1.tar"}


def _blob(layout: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def oci_layout(layout: Path, layer: bytes, annotations: dict[str, str], tag: str | None = "1",
               compression: str = "zstd", layers: int = 1, manifest_edit=None) -> Path:
    """A one-image OCI layout whose layer blob is `layer` (repeated `layers` times)."""
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    desc = {"mediaType": LAYER_MT[compression], **_blob(layout, layer)}
    cfg = {"architecture": "amd64", "os": "linux",
           "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "0" * 64] * layers}}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           **_blob(layout, json.dumps(cfg).encode())},
                "layers": [desc] * layers, "annotations": annotations}
    if manifest_edit:
        manifest_edit(manifest)
    mdesc = {"mediaType": "application/vnd.oci.image.manifest.v1+json", **_blob(layout, json.dumps(manifest).encode())}
    if tag:
        mdesc["annotations"] = {"org.opencontainers.image.ref.name": tag}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [mdesc]}))
    return layout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def registry(tmp: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """(HOST:PORT, environment for skopeo/runc-ckpt) of a private registry, stopped afterwards."""
    binary = require_tool("docker-registry")
    port = free_port()
    storage = tmp / "registry-storage"
    storage.mkdir()
    conf = tmp / "registry.yml"
    conf.write_text(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {storage}\n"
                    f"http:\n  addr: 127.0.0.1:{port}\n")
    host = f"127.0.0.1:{port}"
    registries = tmp / "registries.conf"
    registries.write_text(f'unqualified-search-registries = []\n[[registry]]\nlocation = "{host}"\ninsecure = true\n')
    log = open(tmp / "registry.log", "wb")
    proc = subprocess.Popen([binary, "serve", str(conf)], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://{host}/v2/", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"registry did not start: {(tmp / 'registry.log').read_text()}") from None
                time.sleep(0.1)
        yield host, dict(os.environ, CONTAINERS_REGISTRIES_CONF=str(registries))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
