"""The trust policy: which checkpoints this host may restore, in containers-policy.json(5)'s vocabulary.

A restore runs code chosen by whoever made the checkpoint, so the admin says
per source which signers are trusted, as podman's policy.json says it for
images (docs/runc-ckpt-policy.json.5.md):

  {"default": [{"type": "reject"}],
   "transports": {
     "archive": {"/var/lib/runc-ckpt/exports": [{"type": "sigstoreSigned", "keyPath": "/etc/runc-ckpt/signing.pub"}]},
     "docker":  {"registry.example/ckpt": [{"type": "sigstoreSigned", "keyData": "<base64 PEM>"}]},
     "stream":  {"": [{"type": "reject"}], "10.0.0.5": [...]}}}

Transports and their scopes, most specific first, then the transport's ""
scope, then "default":
  archive, dir -- an archive file / a CRIU images dir: the longest path prefix
                  (whole components) that names it or a directory above it;
  docker       -- an image: "host/repo:tag", "host/repo", then parent namespaces;
  oci          -- an oci:/oci-archive: image: its path, as archive;
  stream       -- a migration stream (--import -): the peer address socat
                  gives ($SOCAT_PEERADDR), else only "".
Requirement types: insecureAcceptAnything, reject, sigstoreSigned (keyPath,
keyPaths or keyData). Every requirement of the chosen scope must accept.
GPG (signedBy) is not supported yet and is refused as unknown, never ignored.
"""

from __future__ import annotations

import base64
import binascii
import json
import os

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.record import Record

DEFAULT_PATH = "/etc/containers/runc-ckpt-policy.json"
TRANSPORTS = ("archive", "dir", "docker", "oci", "stream")
ACCEPT, REJECT, SIGNED = "insecureAcceptAnything", "reject", "sigstoreSigned"
_KEYS = {ACCEPT: {"type"}, REJECT: {"type"}, SIGNED: {"type", "keyPath", "keyPaths", "keyData"}}
MAX_SIZE = 1 << 20


class Requirement(Record):
    type: str
    keys: tuple[bytes, ...] = ()    # sigstoreSigned: the trusted public keys' PEM
    key_sources: tuple[str, ...] = ()  # where each came from (a path, or "keyData"), for error lines


class Policy(Record):
    path: str | None                # None: no policy file (everything is accepted, and said so)
    default: tuple[Requirement, ...]
    transports: dict[str, dict[str, tuple[Requirement, ...]]]

    def requirements(self, transport: str, scope: str) -> tuple[str, tuple[Requirement, ...]]:
        """The scope that applies to scope under transport (its name, or "default"), and its requirements."""
        scopes = self.transports.get(transport, {})
        for candidate in _candidates(transport, scope):
            if candidate in scopes:
                return f"{transport}:{candidate}" if candidate else f"{transport} (any)", scopes[candidate]
        return "default", self.default


NO_POLICY = Policy(None, (Requirement(ACCEPT),), {})


def _candidates(transport: str, scope: str) -> list[str]:
    """scope, then each broader scope, then "" (the transport's default)."""
    out: list[str] = []
    if transport in ("archive", "dir", "oci"):
        path = os.path.normpath(scope) if scope else ""
        while path and path not in out:
            out.append(path)
            if path == "/":
                break
            path = os.path.dirname(path)
    elif transport == "docker":
        name = scope
        if "@" in name:
            name = name.split("@", 1)[0]
        out.append(scope)
        last = name.rsplit("/", 1)[-1]
        if ":" in last:
            name = name[: len(name) - len(last)] + last.split(":", 1)[0]
            out.append(name)
        while "/" in name:
            name = name.rsplit("/", 1)[0]
            out.append(name)
    elif scope:
        out.append(scope)
    out.append("")
    return out


def load(path: str | None) -> Policy:
    """The policy a flag or the config names (it must exist), else DEFAULT_PATH's (missing: NO_POLICY)."""
    where = path or DEFAULT_PATH
    try:
        with open(where, "rb") as f:
            data = f.read(MAX_SIZE + 1)
    except FileNotFoundError:
        if path is not None:
            raise RuncCkptError(f"signature policy {where}: does not exist") from None
        return NO_POLICY
    except OSError as e:
        raise RuncCkptError(f"signature policy {where}: {e.strerror}") from None
    if len(data) > MAX_SIZE:
        raise RuncCkptError(f"signature policy {where}: larger than {MAX_SIZE} bytes")
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RuncCkptError(f"signature policy {where}: not valid JSON: {e}") from None
    return parse(doc, where)


def parse(doc: object, where: str) -> Policy:
    """Check every key (an unknown one is an error naming it: a typo must not open the gate)."""
    if not isinstance(doc, dict):
        raise RuncCkptError(f"signature policy {where}: not a JSON object")
    unknown = sorted(set(doc) - {"default", "transports"})
    if unknown:
        raise RuncCkptError(f"signature policy {where}: unknown key {unknown[0]!r} (known: default, transports)")
    if "default" not in doc:
        raise RuncCkptError(f"signature policy {where}: default: missing (say what an unlisted source gets)")
    default = _requirements(doc["default"], where, "default")
    transports: dict[str, dict[str, tuple[Requirement, ...]]] = {}
    raw_transports = doc.get("transports", {})
    if not isinstance(raw_transports, dict):
        raise RuncCkptError(f"signature policy {where}: transports: not an object")
    for transport, scopes in raw_transports.items():
        if transport not in TRANSPORTS:
            raise RuncCkptError(f"signature policy {where}: transports: unknown transport {transport!r} "
                                f"(known: {', '.join(TRANSPORTS)})")
        if not isinstance(scopes, dict):
            raise RuncCkptError(f"signature policy {where}: transports/{transport}: not an object")
        transports[transport] = {str(scope): _requirements(reqs, where, f"transports/{transport}/{scope}")
                                 for scope, reqs in scopes.items()}
    return Policy(where, default, transports)


def _requirements(raw: object, where: str, key: str) -> tuple[Requirement, ...]:
    if not isinstance(raw, list) or not raw:
        raise RuncCkptError(f"signature policy {where}: {key}: must be a non-empty list of requirements")
    return tuple(_requirement(r, where, f"{key}/{i}") for i, r in enumerate(raw))


def _requirement(raw: object, where: str, key: str) -> Requirement:
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        raise RuncCkptError(f"signature policy {where}: {key}: a requirement is an object with a \"type\"")
    kind = raw["type"]
    if kind not in _KEYS:
        raise RuncCkptError(f"signature policy {where}: {key}: type {kind!r} is not supported "
                            f"(supported: {', '.join(_KEYS)})")
    extra = sorted(set(raw) - _KEYS[kind])
    if extra:
        raise RuncCkptError(f"signature policy {where}: {key}: unknown key {extra[0]!r} for type {kind}")
    if kind != SIGNED:
        return Requirement(kind)
    pems: list[bytes] = []
    sources: list[str] = []
    paths = ([raw["keyPath"]] if "keyPath" in raw else []) + list(raw.get("keyPaths") or [])
    for p in paths:
        if not isinstance(p, str) or not p.startswith("/"):
            raise RuncCkptError(f"signature policy {where}: {key}: keyPath {p!r} is not an absolute path")
        try:
            with open(p, "rb") as f:
                pems.append(f.read(64 << 10))
        except OSError as e:
            raise RuncCkptError(f"signature policy {where}: {key}: keyPath {p}: {e.strerror}") from None
        sources.append(p)
    if "keyData" in raw:
        try:
            pems.append(base64.b64decode(str(raw["keyData"]), validate=True))
        except binascii.Error:
            raise RuncCkptError(f"signature policy {where}: {key}: keyData is not base64") from None
        sources.append(f"{where}: {key}/keyData")
    if not pems:
        raise RuncCkptError(f"signature policy {where}: {key}: sigstoreSigned needs keyPath, keyPaths or keyData")
    return Requirement(kind, tuple(pems), tuple(sources))
