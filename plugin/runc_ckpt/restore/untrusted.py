"""An archive's spec.dump is untrusted: what it may ask of the host when it becomes the runtime spec.

When the bundle has no config.json, restore --import runs the archive's own
spec as root. Unchecked, a hostile archive could bind-mount any host path,
run host programs as hooks, reach host devices, join host namespaces, or
run its process with any capability. So, unless the caller passes
--trust-archive-spec, the spec is refused when it names:

  * a bind mount whose source is outside the configured volume_roots (the
    per-container files podman bind-mounts -- /etc/hosts and the like --
    are always recreated under the bundle instead, never taken from the host);
  * a mount of a filesystem type other than the pseudo filesystems a
    container gets (proc, sysfs, tmpfs, devpts, mqueue, cgroup);
  * hooks, linux.devices, namespace paths to join, or a device cgroup rule
    that allows every device;
  * a process running as root with capabilities beyond runc's and podman's
    default set.

Volume directories are created and filled only under volume_roots.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.runtime import volumes

FLAG = "--trust-archive-spec"
PSEUDO_FS = frozenset({"proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2", "shm"})
# runc spec's defaults plus podman's (containers.conf default_capabilities).
DEFAULT_CAPS = frozenset({
    "CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_MKNOD",
    "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID",
    "CAP_SYS_CHROOT"})


def under_roots(path: str, roots: Sequence[str]) -> bool:
    """Whether path lies strictly inside one of roots (after normalising, without following links)."""
    p = os.path.normpath(path)
    return any(p.startswith(os.path.normpath(r).rstrip("/") + "/") for r in roots)


def check_volume_source(source: str, roots: Sequence[str], what: str) -> None:
    if not under_roots(source, roots):
        raise RuncCkptError(f"{what}: the archive's spec puts it at {source}, outside volume_roots "
                            f"({', '.join(roots) or 'none'}); give the bundle a config.json, or pass {FLAG}")


def problems(spec: dict, roots: Sequence[str], remapped: frozenset[str]) -> list[str]:
    """What the spec asks of the host beyond a confined container; remapped: destinations we recreate."""
    found = []
    for kind, hooks in (spec.get("hooks") or {}).items() if isinstance(spec.get("hooks"), dict) else []:
        if hooks:
            found.append(f"hooks.{kind} would run host programs")
    for m in spec.get("mounts") or []:
        if not isinstance(m, dict):
            continue
        dest = os.path.normpath(str(m.get("destination", "")))
        if volumes.is_bind(m):
            if dest not in remapped and not under_roots(str(m.get("source", "")), roots):
                found.append(f"bind mount of host path {m.get('source')} at {dest}")
        elif str(m.get("type", "")) not in PSEUDO_FS:
            found.append(f"mount of {m.get('source')} (type {m.get('type') or 'none'}) at {dest}")
    linux = v if isinstance(v := spec.get("linux"), dict) else {}
    if linux.get("devices"):
        found.append("linux.devices would create host device nodes")
    for ns in linux.get("namespaces") or []:
        if isinstance(ns, dict) and ns.get("path"):
            found.append(f"joins the host's {ns.get('type')} namespace {ns['path']}")
    resources = v if isinstance(v := linux.get("resources"), dict) else {}
    for rule in resources.get("devices") or []:
        if isinstance(rule, dict) and rule.get("allow") and rule.get("type", "a") == "a" \
                and rule.get("major") is None:
            found.append("a device cgroup rule allows every device")
    process = v if isinstance(v := spec.get("process"), dict) else {}
    user = v if isinstance(v := process.get("user"), dict) else {}
    if not user.get("uid"):
        caps = v if isinstance(v := process.get("capabilities"), dict) else {}
        extra = sorted({c for v in caps.values() if isinstance(v, list) for c in v} - DEFAULT_CAPS)
        if extra:
            found.append(f"process.args run as root with added capabilities {', '.join(extra)}")
    return found


def check(spec: dict, roots: Sequence[str], remapped: frozenset[str], archive: str) -> None:
    """Refuse an archived spec that reaches outside a confined container (see the module doc)."""
    found = problems(spec, roots, remapped)
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise RuncCkptError(f"archive {archive}: its spec.dump is untrusted and {found[0]}{more}; give the bundle "
                            f"a config.json, or pass {FLAG} to run the archive's spec as it is")
