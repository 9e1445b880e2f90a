"""The effective checkpoint/restore settings of one container.

Engines other than podman call `runc checkpoint` with bare runc flags, so an
operator sets policy once (runc-ckpt.yaml) or per container (annotations in
the bundle's config.json). Each setting resolves as: command-line flag >
annotation > config file > built-in default, and remembers where it came
from so debug logs can say why an archive was (or was not) written.

Annotation keys live under one prefix, ANNOTATION_PREFIX. An unknown key or a
bad value under it is an error naming the annotation: a typo must not quietly
turn a policy off.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from types import MappingProxyType

from runc_ckpt.base import goflags
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.record import Record
from runc_ckpt.settings.config import Config

TYPE_CHECKING = False  # typing's flag, without importing typing (base/record.py says why)
if TYPE_CHECKING:
    from typing import Literal

    Compression = Literal["zstd", "gzip", "none"]
else:
    Compression = str

ANNOTATION_PREFIX = "io.runc-ckpt."
COMPRESSIONS = ("zstd", "gzip", "none")
_HOOK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

# Annotation key (after the prefix) -> Policy field.
ANNOTATIONS = {
    "compress": "compress",
    "compress-level": "compress_level",
    "export-dir": "export_dir",
    "retention": "retention",
    "tcp-established": "tcp_established",
    "file-locks": "file_locks",
    "ignore-rootfs": "ignore_rootfs",
    "ignore-volumes": "ignore_volumes",
    "volumes": "extra_volumes",
    "hooks": "hooks",
}
# Command-line flags (cmdflags Option.key) that a policy field yields to.
FLAGS = {
    "compress": "compress",
    "tcp_established": "tcp_established",
    "file_locks": "file_locks",
    "ignore_rootfs": "ignore_rootfs",
    "ignore_volumes": "ignore_volumes",
}
# Booleans that are runc's own checkpoint and restore flags: a policy that
# turns one on must add it to the real runc's arguments.
RUNC_BOOLEANS = {"tcp_established": "--tcp-established", "file_locks": "--file-locks"}


class PolicyFlags(Record):
    """The command-line flags a policy yields to (FLAGS), as a request carries them; None: not given."""

    compress: Compression | None = None
    tcp_established: bool | None = None
    file_locks: bool | None = None
    ignore_rootfs: bool | None = None
    ignore_volumes: bool | None = None

    def given(self) -> dict[str, object]:
        """The flags on the command line, by key, as effective() takes them."""
        return {k: v for k in FLAGS if (v := getattr(self, k)) is not None}

    def keys(self) -> frozenset[str]:
        """Which of them the caller gave (Policy.runc_flags: a runc flag given is in its argv already)."""
        return frozenset(self.given())


class Policy(Record):
    """Resolved settings for one checkpoint or restore; `sources` says where each came from."""

    compress: str = "zstd"
    compress_level: int = 3
    compress_threads: int = 0
    export_dir: str | None = None      # auto-export directory; None: no auto-export
    retention: int = 0                  # archives kept per container in export_dir; 0: all
    tcp_established: bool = False
    file_locks: bool = False
    ignore_rootfs: bool = False
    ignore_volumes: bool = False
    extra_volumes: tuple[str, ...] = ()  # bind-mount destinations to archive as volumes
    hooks: tuple[str, ...] = ()          # hook names enabled by annotation (besides their `when`)
    volume_roots: tuple[str, ...] = ()
    hook_timeout: float = 30.0
    sources: Mapping[str, str] = MappingProxyType({})

    def auto_exports(self, pre_dump: bool) -> bool:
        """Whether a dump is also archived in export_dir: only a complete checkpoint (a pre-dump has no
        restorable images)."""
        return self.export_dir is not None and not pre_dump

    def runc_flags(self, given: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """runc flags this policy adds: booleans it turned on that the caller did not pass itself.

        `given` is the set of flag keys on the command line (cmdflags.Parsed.given);
        a flag the caller gave (even `--file-locks=false`) is already in its argv.
        """
        return [flag for key, flag in RUNC_BOOLEANS.items() if getattr(self, key) and key not in given]

    def describe(self) -> str:
        """One line for debug logs: every setting with its source."""
        parts = []
        for name in ("compress", "compress_level", "compress_threads", "export_dir", "retention",
                     "tcp_established", "file_locks", "ignore_rootfs", "ignore_volumes",
                     "extra_volumes", "hooks", "hook_timeout"):
            value = getattr(self, name)
            if isinstance(value, tuple):
                value = ",".join(value)
            parts.append(f"{name}={value} ({self.sources.get(name, 'default')})")
        return "policy: " + "; ".join(parts)


def effective(cfg: Config, annotations: Mapping[str, object] | None,
              flags_given: Mapping[str, object] | None = None) -> Policy:
    """Resolve the policy: flag > annotation > config > default.

    `annotations` is the bundle config.json's "annotations" object (None or
    missing is fine). `flags_given` maps cmdflags Option keys to values for
    the flags actually on the command line only, e.g.
    `{k: parsed.values[k] for k in parsed.given}`; keys that policy does not
    cover are ignored.
    """
    values: dict[str, object] = {
        "compress": cfg.compress,
        "compress_level": cfg.compress_level,
        "compress_threads": cfg.compress_threads,
        "export_dir": cfg.export_dir or None,
        "retention": cfg.retention,
        "volume_roots": tuple(cfg.volume_roots),
        "hook_timeout": float(cfg.hook_timeout),
    }
    sources = {k: f"config {cfg.path}" if k in cfg.keys else "default" for k in values}

    for name, value in parse_annotations(annotations, cfg).items():
        values[name] = value
        sources[name] = f"annotation {ANNOTATION_PREFIX}{_annotation_key(name)}"

    for key, name in FLAGS.items():
        if flags_given and key in flags_given:
            value = flags_given[key]
            if name == "compress" and value not in COMPRESSIONS:
                raise RuncCkptError(f"invalid value {value!r} for --compress: choose one of {', '.join(COMPRESSIONS)}")
            values[name] = value if name == "compress" else bool(value)
            sources[name] = "flag --" + key.replace("_", "-")

    for name in ANNOTATIONS.values():
        sources.setdefault(name, "default")
    # values holds each field's checked value; a dict[str, object] cannot say which type each key has.
    return Policy(**values, sources=MappingProxyType(sources))  # type: ignore[arg-type]


def parse_annotations(annotations: Mapping[str, object] | None, cfg: Config) -> dict[str, object]:
    """The Policy fields set by io.runc-ckpt.* annotations, validated; errors name the annotation."""
    if annotations is None:
        return {}
    if not isinstance(annotations, Mapping):
        raise RuncCkptError("config.json: annotations: not an object")
    out: dict[str, object] = {}
    for full_key in sorted(annotations):
        if not isinstance(full_key, str) or not full_key.startswith(ANNOTATION_PREFIX):
            continue
        key = full_key[len(ANNOTATION_PREFIX):]
        raw = annotations[full_key]
        if key not in ANNOTATIONS:
            raise RuncCkptError(f"annotation {full_key}: unknown runc-ckpt annotation "
                                f"(known: {', '.join(ANNOTATION_PREFIX + k for k in sorted(ANNOTATIONS))})")
        if not isinstance(raw, str):
            raise RuncCkptError(f"annotation {full_key}: value must be a string, not {type(raw).__name__}")
        out[ANNOTATIONS[key]] = _parse_value(key, full_key, raw, cfg)
    return out


def _annotation_key(name: str) -> str:
    return next(k for k, v in ANNOTATIONS.items() if v == name)


def _parse_value(key: str, full_key: str, raw: str, cfg: Config) -> object:
    value = raw.strip()
    if key == "compress":
        if value not in COMPRESSIONS:
            raise RuncCkptError(f"annotation {full_key}: unknown compression {raw!r}: "
                                f"choose one of {', '.join(COMPRESSIONS)}")
        return value
    if key in ("compress-level", "retention"):
        if key == "compress-level":
            ok, want = bool(re.fullmatch(r"[0-9]{1,2}", value)) and 1 <= int(value) <= 22, "an integer in 1..22"
        else:
            ok, want = bool(re.fullmatch(r"[0-9]{1,9}", value)), "an integer >= 0"
        if not ok:
            raise RuncCkptError(f"annotation {full_key}: {raw!r} is not {want}")
        return int(value)
    if key in ("tcp-established", "file-locks", "ignore-rootfs", "ignore-volumes"):
        flag = goflags.parse_bool(value)
        if flag is None:
            raise RuncCkptError(f"annotation {full_key}: {raw!r} is not a boolean (use true or false)")
        return flag
    if key == "export-dir":
        return _export_dir(full_key, value, cfg)
    if key == "volumes":
        dests = tuple(d.strip() for d in value.split(",") if d.strip())
        for d in dests:
            if not d.startswith("/") or ".." in d.split("/"):
                raise RuncCkptError(f"annotation {full_key}: {d!r} is not an absolute container path")
        return tuple(dict.fromkeys(os.path.normpath(d) for d in dests))
    # hooks
    names = tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    for n in names:
        if not _HOOK_NAME.match(n):
            raise RuncCkptError(f"annotation {full_key}: {n!r} is not a hook name")
    return names


def _export_dir(full_key: str, value: str, cfg: Config) -> str | None:
    """An annotation's export dir: "" turns auto-export off; otherwise it must lie under
    export_roots or the config's own export_dir (symlinks resolved, so no link leads out)."""
    if value == "":
        return None
    if not value.startswith("/"):
        raise RuncCkptError(f"annotation {full_key}: {value!r} is not an absolute path")
    real = os.path.realpath(value)
    for root in [*cfg.export_roots, *([cfg.export_dir] if cfg.export_dir else [])]:
        root_real = os.path.realpath(root)
        if real == root_real or real.startswith(root_real.rstrip("/") + "/"):
            return real
    allowed = ", ".join([*cfg.export_roots, *([cfg.export_dir] if cfg.export_dir else [])]) or "none"
    raise RuncCkptError(f"annotation {full_key}: {value!r} is outside the directories the config's "
                        f"export_roots and export_dir allow ({allowed})")
