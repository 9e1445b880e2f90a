"""Read and validate a bundle's OCI config.json.

A checkpoint archive carries the spec (spec.dump) and restore trusts it, so a
config.json that is not JSON, or that breaks the OCI runtime-spec schema in a
part runc-ckpt relies on, is refused before the container is touched. The
schema (schemas/oci-config.schema.json) is a compact draft 2020-12 rendering
of the upstream one; the error names the offending field.
"""

# No `from __future__ import annotations` here: it would bind the name
# `annotations` that this module's function of that name must own.

import json
import os

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.base.jsondoc import JSONObject
from runc_ckpt.settings import config

SCHEMA = "oci-config.schema.json"
CONFIG_NAME = "config.json"


def load(bundle: str) -> JSONObject:
    """The parsed, schema-checked config.json of bundle."""
    path = os.path.join(bundle, CONFIG_NAME)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise RuncCkptError(f"bundle config {path}: {e.strerror}") from None
    try:
        spec: JSONObject = json.loads(raw)    # an object: the schema's top-level type, checked below
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RuncCkptError(f"bundle config {path}: not valid JSON: {e}") from None
    config.validate(spec, SCHEMA, f"bundle config {path}")
    return spec


def annotations(spec: JSONObject) -> dict[str, str]:
    """The spec's annotations; the schema allows null for none."""
    found: dict[str, str] = spec.get("annotations") or {}
    return found
