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

import json
import os
from typing import TYPE_CHECKING

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.metadata import configdump, hostcheck, needs, preflight
from runc_ckpt.runtime import ocispec
from runc_ckpt.trust import signature, verdict
from runc_ckpt.trust.policy import Policy

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

FORMAT = "runc-ckpt-stream"
VERSION = 1
PLAIN, PRE_COPY = "stream", "pre-copy"


def build(runc: str, criu: str, container_id: str, mode: str, handshake: bool,
          needs_doc: dict | None = None) -> dict:
    """needs_doc: metadata.needs.live, so the receiver checks the CPU and bind sources before the freeze."""
    doc = {"format": FORMAT, "version": VERSION, "mode": mode, "container": container_id,
           "host": configdump.host(), "versions": configdump.versions(runc, criu), "handshake": handshake}
    if needs_doc is not None:
        doc["needs"] = needs_doc
    return doc


def _signed_bytes(hello: dict) -> bytes:
    """What the hello's signature covers: the hello without it, as canonical JSON."""
    return json.dumps({k: v for k, v in hello.items() if k != "signature"}, sort_keys=True,
                      separators=(",", ":")).encode()


def sign(hello: dict, key: ec.EllipticCurvePrivateKey) -> None:
    """Sign the hello (trust.signature's document under "signature"), so a receiver whose policy asks
    for a signature refuses an unsigned or untrusted sender before the container is frozen."""
    hello["signature"] = json.loads(signature.sign(_signed_bytes(hello), key))


def judge(hello: dict, trust: Policy, peer: str, container_id: str | None) -> list[str]:
    """Why the trust policy refuses this hello (empty: go), before the sender freezes the container;
    the stream's signed manifest is judged again at its end, before anything is applied."""
    sig = hello.get("signature")
    judged = verdict.decide(trust, "stream", peer, _signed_bytes(hello),
                            json.dumps(sig).encode() if sig is not None else None, "the stream's hello")
    if not judged.accepted:
        return [judged.reason]
    replay = verdict.replayed(judged, hello.get("container"), container_id, "the stream")
    return [replay] if replay else []


def check_needs(hello: dict, bundle: str | None, criu: str) -> list[str]:
    """The host pre-flight (metadata.hostcheck) on what the hello says the checkpoint will need."""
    recorded = needs.from_json(hello.get("needs"))
    if recorded is None or bundle is None:
        return []
    try:
        spec: dict | None = ocispec.load(bundle)
    except RuncCkptError:
        spec = None                 # no config.json: the archive's spec.dump becomes it, checked later
    root = (spec or {}).get("root") if isinstance((spec or {}).get("root"), dict) else {}
    rootfs = os.path.normpath(os.path.join(bundle, str((root or {}).get("path") or "rootfs")))
    target = hostcheck.Target(rootfs=rootfs, spec=spec, flags=frozenset(), criu=criu, check_cgroup=False)
    return [c.detail for c in hostcheck.failures(hostcheck.run(recorded, target))]


def check(hello: dict, runc: str, criu: str, skip: bool, bundle: str | None = None) -> list[str]:
    """Why this host cannot restore what the hello announces (empty: go)."""
    if hello.get("format") != FORMAT or hello.get("version") != VERSION:
        return [f"unknown stream format {hello.get('format')!r} version {hello.get('version')!r}"]
    rows = preflight.compare(preflight.recorded({"host": hello.get("host"), "versions": hello.get("versions")}, {}),
                             configdump.versions(runc, criu))
    if skip:
        return []
    return [f"{r.what} {r.recorded} there, {r.here} here" for r in rows if r.verdict == preflight.MISMATCH] \
        + check_needs(hello, bundle, criu)
