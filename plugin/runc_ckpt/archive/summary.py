"""What a checkpoint archive holds, as inspect reports it: one dict, and its text rendering.

Works on a staged archive (archive.reader), ours or podman's; the command
module only parses flags and prints.
"""

from __future__ import annotations

import os

from runc_ckpt.archive import layout, reader
from runc_ckpt.base import runclog
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.jsondoc import JSONObject
from runc_ckpt.base.progress import human
from runc_ckpt.runtime.criu import stats

# checkpointctl's mapping of the io.container.manager annotation.
ENGINES = {"libpod": "podman", "cri-o": "CRI-O"}


def inspect(path: str) -> tuple[JSONObject, str | None]:
    """Stage the archive at `path` without writing anything; (its description, the problem if any)."""
    staged, problem = read(path)
    return describe(staged, path, problem), problem


def read(path: str, sha256: str | None = None,
         decryption_keys: tuple[str, ...] = ()) -> tuple[reader.Staged, str | None]:
    """The archive at `path` read and hashed without writing anything, and the problem if any."""
    staged = reader.stage(path, reader.Targets(None, None, None), what_is_required="", sha256=sha256,
                          decryption_keys=decryption_keys)
    problem = None
    try:
        staged.verify()
        # A pre-checkpoint archive (--pre-checkpoint --export) holds only pre-checkpoint/.
        if not staged.has_inventory() and f"{layout.PRE_CHECKPOINT_DIR}/{layout.INVENTORY}" not in staged.members:
            problem = (f"archive {path} has no {layout.CHECKPOINT_DIR}/{layout.INVENTORY} "
                       f"(nor {layout.PRE_CHECKPOINT_DIR}/{layout.INVENTORY})")
    except RuncCkptError as e:
        problem = str(e)
    return staged, problem


def engine_of(staged: reader.Staged) -> str:
    if staged.manifest_raw is not None:
        return "runc-ckpt"
    annotations = (staged.spec or {}).get("annotations") or {}
    return ENGINES.get(str(annotations.get("io.container.manager", "")), "containerd")


def describe(staged: reader.Staged, path: str, problem: str | None) -> JSONObject:
    """Everything inspect reports, as one JSON-able dict."""
    cfg = staged.config_dump or {}
    man = staged.manifest or {}
    container = man.get("container") or {}
    pages = sum(d.size for n, d in staged.members.items()
                if n.startswith((f"{layout.CHECKPOINT_DIR}/pages-", f"{layout.PRE_CHECKPOINT_DIR}/pages-"))
                and n.endswith(".img"))
    rootfs = staged.members.get(layout.ROOTFS_DIFF)
    criu_stats: dict[str, int] = {}
    if staged.stats_dump is not None:
        try:
            criu_stats = stats.decode(staged.stats_dump).get("dump", {})
        except RuncCkptError:
            criu_stats = {}
    checkpointed = cfg.get("checkpointedTime") or man.get("created")
    if not checkpointed and staged.inventory_mtime:
        checkpointed = runclog.rfc3339(staged.inventory_mtime, utc=True)
    if staged.manifest_raw is None:
        verification = "no manifest (podman archive): layout checked" if not problem else problem
    else:
        verification = f"manifest verified ({len(staged.members)} members)" if not problem else problem
    return {
        "archive": path,
        "compression": staged.compression,
        "encrypted_for": staged.sealed_for,
        "archive_size": os.path.getsize(path),
        "id": cfg.get("id") or container.get("id"),
        "name": cfg.get("name") or container.get("name"),
        "engine": engine_of(staged),
        "runtime": cfg.get("runtime") or (man.get("versions") or {}).get("runc"),
        "created": cfg.get("createdTime"),
        "checkpointed": checkpointed,
        "sizes": {
            "memory_pages": pages,
            "rootfs_diff": rootfs.size if rootfs else None,
            "volumes": dict(sorted(staged.volume_sizes.items())),
        },
        "criu_statistics": criu_stats,
        "options": man.get("options") or {},
        "pre_checkpoint": layout.PRE_CHECKPOINT_DIR in staged.checkpoint_dirs,
        "verified": problem is None,
        "verification": verification,
    }


def _size(n: int | None) -> str:
    return "-" if n is None else human(n)


def render_text(info: JSONObject) -> str:
    sizes = info["sizes"]
    rows = [
        ("Archive", f"{info['archive']} ({info['compression']}, {_size(info['archive_size'])})"),
        ("Encryption", ", ".join(info["encrypted_for"]) or "none"),
        ("Container ID", info["id"] or "-"),
        ("Name", info["name"] or "-"),
        ("Engine", info["engine"]),
        ("Runtime", info["runtime"] or "-"),
        ("Created", info["created"] or "-"),
        ("Checkpointed", info["checkpointed"] or "-"),
        ("Memory pages", _size(sizes["memory_pages"])),
        ("Rootfs diff", _size(sizes["rootfs_diff"])),
    ]
    vols = sizes["volumes"]
    rows.append(("Volumes", ", ".join(f"{k} ({_size(v)})" for k, v in vols.items()) or "none"))
    crit = info["criu_statistics"]
    rows.append(("CRIU statistics", ", ".join(f"{k}={v}" for k, v in crit.items()) or "-"))
    opts = info["options"]
    rows.append(("Options", ", ".join(f"{k}={v}" for k, v in sorted(opts.items())) or "-"))
    rows.append(("Verification", info["verification"]))
    width = max(len(k) for k, _ in rows) + 2
    return "".join(f"{k + ':':<{width}}{v}\n" for k, v in rows)
