"""runc-ckpt's YAML configuration: defaults, loading and validation.

Loaded only by the commands runc-ckpt handles itself, never on the
pass-through path (the sh front end reads just the `runc` key). A missing
file means defaults; a malformed or invalid one is an error naming the file
and the key, never silently ignored.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from importlib import resources

from runc_ckpt.errors import RuncCkptError

DEFAULT_PATH = "/etc/containers/runc-ckpt.yaml"
ENV_VAR = "RUNC_CKPT_CONFIG"


@dataclass
class Config:
    runc: str | None = None
    state_dir: str = "/var/lib/runc-ckpt"
    compress: str = "zstd"
    compress_level: int = 3
    compress_threads: int = 0
    volume_roots: list[str] = field(default_factory=lambda: [
        "/var/lib/containers/storage/volumes", "/var/lib/docker/volumes"])
    export_dir: str | None = None
    retention: int = 0
    hooks_dir: str = "/etc/containers/runc-ckpt/hooks.d"
    hook_timeout: float = 30.0
    log_level: str = "warning"
    path: str | None = None


def config_path(flag: str | None) -> str:
    """--config beats $RUNC_CKPT_CONFIG beats the default path."""
    return flag or os.environ.get(ENV_VAR) or DEFAULT_PATH


def load(flag: str | None = None) -> Config:
    """Read and validate the config file; a file that does not exist gives defaults."""
    path = config_path(flag)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        if flag:
            raise RuncCkptError(f"config file {path}: does not exist") from None
        return Config()
    except OSError as e:
        raise RuncCkptError(f"config file {path}: {e.strerror}") from None
    import yaml
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise RuncCkptError(f"config file {path}: not valid YAML: {' '.join(str(e).split())}") from None
    if data is None:
        data = {}
    validate(data, schema_name="config.schema.json", what=f"config file {path}")
    return Config(**data, path=path)


def validate(data: object, schema_name: str, what: str) -> None:
    """Validate against a schema shipped in the package; the error names the key."""
    import jsonschema
    schema = json.loads(resources.files("runc_ckpt").joinpath("schemas", schema_name).read_text())
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(data))
    if error is not None:
        key = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise RuncCkptError(f"{what}: {key}: {error.message}")
