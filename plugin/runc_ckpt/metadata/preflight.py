"""Pre-flight check: does this host fit the checkpoint? Compared before anything is touched.

Podman records the checkpointing host's arch, kernel, CRIU and runtime
versions in its images and never checks them; our manifest records them
too. A different architecture cannot work, and a CRIU older than the one
that dumped may not read the images: both refuse the restore (unless
--skip-preflight). A different kernel or runtime is shown, not refused:
they usually work.
"""

from __future__ import annotations

from collections.abc import Mapping

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.jsondoc import JSONObject
from runc_ckpt.base.record import Record
from runc_ckpt.image import annotations as image_annotations
from runc_ckpt.runtime import hostinfo

OK, DIFFERS, MISMATCH = "same", "differs", "mismatch"


class Row(Record):
    what: str
    recorded: str
    here: str
    verdict: str


def recorded(manifest: JSONObject | None, annotations: Mapping[str, str]) -> dict[str, str]:
    """The checkpointing host's facts: an image's annotations, else our manifest's host/versions."""
    out = image_annotations.recorded(annotations)
    man = manifest or {}
    host = man.get("host")
    if not isinstance(host, dict):
        host = {}
    versions = man.get("versions")
    if not isinstance(versions, dict):
        versions = {}
    for key, value in (("host_arch", host.get("arch")), ("host_kernel", host.get("kernel")),
                       ("criu_version", versions.get("criu")), ("runtime_version", versions.get("runc"))):
        if value and key not in out:
            out[key] = str(value)
    return out


def _criu(value: str) -> int | None:
    return int(value) if value.isdigit() else hostinfo.criu_number(value)


def compare(rec: dict[str, str], host_versions: dict[str, str]) -> list[Row]:
    """One row per recorded fact, with this host's value and the verdict."""
    arch, kernel = hostinfo.goarch(), hostinfo.kernel()     # not current(): no distribution is compared
    rows = []
    if "host_arch" in rec:
        rows.append(Row("architecture", rec["host_arch"], arch, OK if rec["host_arch"] == arch else MISMATCH))
    if "host_kernel" in rec:
        rows.append(Row("kernel", rec["host_kernel"], kernel, OK if rec["host_kernel"] == kernel else DIFFERS))
    if "criu_version" in rec:
        then, now = _criu(rec["criu_version"]), _criu(host_versions.get("criu", ""))
        verdict = OK if then == now else (MISMATCH if then and now and now < then else DIFFERS)
        rows.append(Row("CRIU", rec["criu_version"], host_versions.get("criu", "unknown"), verdict))
    if "runtime_version" in rec:
        then_rt = rec["runtime_version"]
        now_rt = host_versions.get("runc", "unknown")
        rows.append(Row("runtime", then_rt, now_rt, OK if now_rt in then_rt or then_rt in now_rt else DIFFERS))
    return rows


def check(rows: list[Row], what: str, skip: bool) -> None:
    """Refuse a real mismatch unless skip (--skip-preflight)."""
    bad = [r for r in rows if r.verdict == MISMATCH]
    if bad and not skip:
        detail = "; ".join(f"{r.what} {r.recorded} there, {r.here} here" for r in bad)
        raise RuncCkptError(f"{what} was made on an incompatible host: {detail} "
                            f"(--skip-preflight restores anyway)")
