"""Our manifest member: what the archive holds, written last, verified on restore.

Format (JSON, member runc-ckpt.manifest.json):
  {"format": "runc-ckpt", "format_version": 1, "created": RFC3339,
   "versions": {"runc-ckpt": ..., "runc": ..., "criu": ...},
   "host": {"arch": GOARCH, "kernel": ..., "cgroups": "v1"|"v2", "distribution": ...},
   "container": {"id": ..., "name": ...},
   "options": {flag: value, ...},
   "rootfs": {"kind": "overlay-diff" | "full" | "none", "root_mode": int | null},
   "bind_mounts": [{"destination": ..., "source": ..., "archived_as": name | null}],
   "members": {member name: {"size": int, "sha256": hex}, ...}}
`members` lists every regular-file member except the manifest itself and
its signature (MANIFEST_SIG, trust.signature), which signs these bytes.
Podman's own exports have no manifest; restore then checks only the layout.
"""

from __future__ import annotations

import json

from runc_ckpt.archive import layout
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.jsondoc import JSONObject
from runc_ckpt.base.record import Record


class MemberDigest(Record):
    size: int
    sha256: str


def build(members: dict[str, MemberDigest], **fields: object) -> bytes:
    """Serialise a manifest; fields are the top-level keys other than format/members."""
    doc: dict[str, object] = {"format": layout.FORMAT, "format_version": layout.FORMAT_VERSION}
    doc.update(fields)
    doc["members"] = {name: {"size": d.size, "sha256": d.sha256} for name, d in sorted(members.items())}
    return json.dumps(doc, indent=1, sort_keys=False).encode() + b"\n"


def parse(data: bytes) -> JSONObject:
    """Parse and sanity-check a manifest; an unknown format version is refused."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RuncCkptError(f"archive manifest is not valid JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != layout.FORMAT:
        raise RuncCkptError("archive manifest is not a runc-ckpt manifest")
    version = doc.get("format_version")
    if version != layout.FORMAT_VERSION:
        raise RuncCkptError(f"archive format version {version!r} is not supported "
                            f"(this runc-ckpt reads version {layout.FORMAT_VERSION})")
    if not isinstance(doc.get("members"), dict):
        raise RuncCkptError("archive manifest has no member list")
    return doc


def verify(doc: JSONObject, seen: dict[str, MemberDigest]) -> list[str]:
    """Compare what was read against the manifest; return one problem per line (empty: good)."""
    problems = []
    expected: JSONObject = doc["members"]    # parse() checked it is an object
    for name, want in sorted(expected.items()):
        got = seen.get(name)
        if got is None:
            problems.append(f"{name}: listed in the manifest but missing")
        elif got.size != want.get("size") or got.sha256 != want.get("sha256"):
            problems.append(f"{name}: size/sha256 differ from the manifest")
    for name in sorted(set(seen) - set(expected) - {layout.MANIFEST, layout.MANIFEST_SIG}):
        problems.append(f"{name}: not listed in the manifest")
    return problems
