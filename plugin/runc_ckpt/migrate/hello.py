"""The stream's first member, and the receiver's pre-flight check of it.

The hello says who sends what: the container, the stream mode, the sender's
host (architecture, kernel: configdump.host, as in our manifest) and its
runc-ckpt/runc/CRIU versions. The receiver reads it before anything else
and runs check(), which is the images issue's pre-flight check
(restore.preflight: a different architecture or an older CRIU refuses,
--skip-preflight overrides) applied to the hello instead of a manifest; with
a back channel (see handshake) its verdict reaches the sender before the
container is frozen.
"""

from __future__ import annotations

from runc_ckpt.metadata import configdump, preflight

FORMAT = "runc-ckpt-stream"
VERSION = 1
PLAIN, PRE_COPY = "stream", "pre-copy"


def build(runc: str, criu: str, container_id: str, mode: str, handshake: bool) -> dict:
    return {"format": FORMAT, "version": VERSION, "mode": mode, "container": container_id,
            "host": configdump.host(), "versions": configdump.versions(runc, criu), "handshake": handshake}


def check(hello: dict, runc: str, criu: str, skip: bool) -> list[str]:
    """Why this host cannot restore what the hello announces (empty: go)."""
    if hello.get("format") != FORMAT or hello.get("version") != VERSION:
        return [f"unknown stream format {hello.get('format')!r} version {hello.get('version')!r}"]
    rows = preflight.compare(preflight.recorded({"host": hello.get("host"), "versions": hello.get("versions")}, {}),
                             configdump.versions(runc, criu))
    if skip:
        return []
    return [f"{r.what} {r.recorded} there, {r.here} here" for r in rows if r.verdict == preflight.MISMATCH]
