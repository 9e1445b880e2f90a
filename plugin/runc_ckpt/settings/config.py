"""runc-ckpt's YAML configuration: defaults, loading and validation.

Loaded only by the commands runc-ckpt handles itself, never on the
pass-through path (the sh front end reads just a plain `runc: /path` line).
A missing default file means defaults; a file named explicitly (--config or
$RUNC_CKPT_CONFIG) must exist. A malformed or invalid file is an error naming
the file and the key, never silently ignored.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from runc_ckpt.base import configfile
from runc_ckpt.base.configfile import ENV_VAR
from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.globalflags import GlobalFlags  # builtins only, already loaded by cli
from runc_ckpt.base.record import Record
from runc_ckpt.settings import plainyaml

_SCHEMAS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schemas")


class Config(Record):
    """The settings of runc-ckpt.yaml; field names are the YAML keys (see schemas/config.schema.json)."""

    runc: str | None = None
    state_dir: str = "/var/lib/runc-ckpt"
    compress: str = "zstd"
    compress_level: int = 3
    compress_threads: int = 0
    volume_roots: Sequence[str] = ("/var/lib/containers/storage/volumes", "/var/lib/docker/volumes")
    export_dir: str | None = None
    # An annotation (set by whoever creates the container, e.g. a Kubernetes
    # user) must not make a root runtime write archives anywhere it likes.
    export_roots: Sequence[str] = ("/var/lib/runc-ckpt/exports",)
    retention: int = 0
    hooks_dir: str = "/etc/containers/runc-ckpt/hooks.d"
    hook_timeout: float = 30.0
    log_level: str = "warning"
    # Seconds a checkpoint/restore waits for another runc-ckpt call on the same container.
    lock_timeout: float = 60.0
    # The longest phase-0 pause a --pre-copy stream's memory pre-copy may cause (migrate.memory); None: any.
    pre_copy_max_pause: float | None = None
    # The node's keys (trust.sealkeys): every export is encrypted for encryption_key ("jwe:PUB.pem")
    # when no --encryption-key is given; decryption_key adds to any --decryption-key.
    encryption_key: str | None = None
    # The node's signing key (trust.keys): every export is signed with it when no
    # --sign-by-sigstore-private-key is given; signature_policy: the trust policy restore enforces.
    sign_by_sigstore_private_key: str | None = None
    sign_passphrase_file: str | None = None
    signature_policy: str | None = None
    decryption_key: Sequence[str] = ()
    path: str | None = None  # the file these settings came from; None: built-in defaults
    keys: frozenset[str] = frozenset()  # the keys that file set, so logs can tell a default from a choice


def apply_log_level(cfg: Config, flags: GlobalFlags) -> None:
    """log_level: debug turns on runc-ckpt's debug lines as runc's --debug does.

    Only the flags object changes, never the arguments runc gets: the real
    runc's own verbosity stays the caller's choice.
    """
    if cfg.log_level == "debug":
        flags.debug = True


def load(flag: str | None = None) -> Config:
    """Read and validate the config file; a missing default file gives defaults."""
    path = configfile.config_path(flag)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        if path != configfile.DEFAULT_PATH:
            source = "--config" if flag else f"${ENV_VAR}"
            raise RuncCkptError(f"config file {path} (from {source}): does not exist") from None
        return Config()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        raise RuncCkptError(f"config file {path}: {reason}") from None
    data = plainyaml.read(text)
    if data is None:
        # Imported here, not at the top: plain files (plainyaml) skip PyYAML's ~15 ms (test_layering LAZY).
        import yaml
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise RuncCkptError(f"config file {path}: not valid YAML: {' '.join(str(e).split())}") from None
    if data is None:
        data = {}
    validate(data, schema_name="config.schema.json", what=f"config file {path}")
    return Config(**data, path=path, keys=frozenset(data))


def validate(data: object, schema_name: str, what: str) -> None:
    """Validate against a schema shipped in the package; the error names the key.

    settings.schemacheck vouches for the (usual) valid document without
    importing jsonschema (~130 ms); jsonschema decides every other case.
    The schema is read from beside this module (package_data in setup.cfg): importlib.resources
    would add ~8 ms of imports to every call that reads a config file, for nothing a path cannot do.
    """
    import json

    from runc_ckpt.settings import schemacheck
    with open(os.path.join(_SCHEMAS, schema_name), encoding="utf-8") as f:
        schema = json.load(f)
    if schemacheck.surely_valid(data, schema):
        return
    import jsonschema
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(data))
    if error is None:
        return
    path = [str(p) for p in error.absolute_path]
    message = error.message
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        # Name the unknown key itself rather than its parent.
        allowed = error.schema.get("properties", {})
        unknown = sorted(str(k) for k in error.instance if k not in allowed)
        if unknown:
            path.append(unknown[0])
            message = f"unknown key (known: {', '.join(sorted(allowed))})"
    elif error.validator == "pattern" and error.validator_value == "^/":
        message = f"{error.instance!r} is not an absolute path"
    key = "/".join(path) or "(top level)"
    raise RuncCkptError(f"{what}: {key}: {message}")
