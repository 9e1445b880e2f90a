"""Find the mount at a path in /proc/self/mountinfo and read overlay's layer directories.

The container root that runc reports is normally the merged directory of an
overlay mount made by the engine; its upperdir is exactly what the container
changed. mountinfo escapes space, tab, newline and backslash as octal
(\\040 ...); overlay additionally escapes ':' inside lowerdir with a backslash.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from types import MappingProxyType

from runc_ckpt.base.record import Record

MOUNTINFO = "/proc/self/mountinfo"
# overlayfs's default for metacopy: mountinfo names the option only where a mount differs from it.
METACOPY_DEFAULT = "/sys/module/overlay/parameters/metacopy"
_OCTAL = re.compile(r"\\([0-7]{3})")
_LOWER_SPLIT = re.compile(r"(?<!\\):")


class Mount(Record):
    mount_point: str
    fstype: str
    source: str
    super_options: Mapping[str, str] = MappingProxyType({})


class OverlayDirs(Record):
    upper: str
    lowers: list[str]      # top-most first; empty when they cannot be resolved to absolute paths
    metacopy: bool = False  # upper files may hold metadata only, their data in a lower layer


def unescape(text: str) -> str:
    """Undo mountinfo's octal escapes (\\040 -> space)."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), text)


def parse_line(line: str) -> Mount | None:
    """One mountinfo line -> Mount; None for a line that is not in the documented shape."""
    fields = line.split()
    try:
        sep = fields.index("-", 6)
        mount_point, fstype, source, sopts = fields[4], fields[sep + 1], fields[sep + 2], fields[sep + 3]
    except (ValueError, IndexError):
        return None
    options: dict[str, str] = {}
    for opt in sopts.split(","):          # split before unescaping: a ',' in a path stays \054
        key, _, value = opt.partition("=")
        options[key] = unescape(value)
    return Mount(unescape(mount_point), fstype, unescape(source), options)


def find_mount(path: str, mountinfo: str = MOUNTINFO) -> Mount | None:
    """The mount whose mount point is exactly `path` (the last, i.e. top-most, one)."""
    want = os.path.realpath(path)
    found = None
    with open(mountinfo, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            m = parse_line(line)
            if m is not None and m.mount_point == want:
                found = m
    return found


def overlay_dirs(mount: Mount) -> OverlayDirs | None:
    """upperdir and lowerdirs of an overlay mount; None for another fs or a read-only overlay."""
    if mount.fstype != "overlay" or "upperdir" not in mount.super_options:
        return None
    upper = mount.super_options["upperdir"]
    lowers = [p.replace("\\:", ":").replace("\\\\", "\\")
              for p in _LOWER_SPLIT.split(mount.super_options.get("lowerdir", "")) if p]
    if not all(os.path.isabs(p) for p in lowers):
        lowers = []   # relative to the engine's working directory at mount time: unknowable here
    metacopy = mount.super_options.get("metacopy")
    return OverlayDirs(upper, lowers, metacopy == "on" if metacopy else _metacopy_default())


def _metacopy_default() -> bool:
    try:
        with open(METACOPY_DEFAULT, "rb") as f:
            return f.read(1) == b"Y"
    except OSError:         # overlay not loaded (then no mount uses it) or no sysfs: assume the worst
        return True
