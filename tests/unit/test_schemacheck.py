"""settings.schemacheck never vouches for a document jsonschema refuses, and does vouch for real specs.

Differential: every schema shipped, a valid document for each, and a few
thousand mutations of it (each leaf replaced by values of other types and
edge values, keys dropped, unknown keys added); whenever the quick check
says "valid", jsonschema must agree.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from importlib import resources

import jsonschema
import pytest

from runc_ckpt.settings import schemacheck
from tests.integration.conftest import make_spec

ODD_VALUES = [None, True, False, 0, -1, 1.5, 2.0, 2 ** 64, 4294967296, "", "x", "/abs", "RLIMIT_X", [], ["a"],
              ["a", "a"], [1, 1], {}, {"k": "v"}, {"k": 1}]

VALID = {
    "oci-config.schema.json": make_spec(["sleep", "1"]) | {
        "annotations": {"a": "b"},
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}], "uidMappings": [
            {"containerID": 0, "hostID": 1000, "size": 1}], "maskedPaths": ["/proc/kcore"],
            "rootfsPropagation": "private", "sysctl": {"net.ipv4.ip_forward": "1"}}},
    "config.schema.json": {"runc": "/usr/sbin/runc", "state_dir": "/var/lib/x", "compress": "zstd",
                           "compress_level": 3, "volume_roots": ["/v"], "retention": 2, "hook_timeout": 5,
                           "log_level": "debug"},
    "hook.schema.json": {"version": "1.0.0", "hook": {"path": "/bin/true", "args": ["true"], "timeout": 3},
                         "when": {"always": True}, "stages": ["prerestore"]},
}


def _schema(name: str) -> dict:
    return json.loads(resources.files("runc_ckpt.settings").joinpath("schemas", name).read_text())


def _mutations(doc: object):
    """The document with one change each, anywhere in it."""
    if isinstance(doc, dict):
        for key in list(doc):
            smaller = dict(doc)
            del smaller[key]
            yield smaller
            for sub in _mutations(doc[key]):
                yield {**doc, key: sub}
        yield {**doc, "unknownKey": 1}
    elif isinstance(doc, list):
        for i, item in enumerate(doc):
            for sub in _mutations(item):
                yield doc[:i] + [sub] + doc[i + 1:]
        yield doc + copy.deepcopy(doc[:1])
    for value in ODD_VALUES:
        if value != doc or type(value) is not type(doc):
            yield value


@pytest.mark.parametrize("name", sorted(VALID))
def test_quick_check_agrees_with_jsonschema(name):
    schema = _schema(name)
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid(VALID[name])
    assert schemacheck.surely_valid(VALID[name], schema)
    vouched = refused = 0
    for doc in _mutations(VALID[name]):
        if schemacheck.surely_valid(doc, schema):
            vouched += 1
            assert validator.is_valid(doc), json.dumps(doc)[:300]
        elif not validator.is_valid(doc):
            refused += 1
    assert vouched > 10 and refused > 10            # both ways exercised


def test_unknown_keyword_is_left_to_jsonschema():
    assert not schemacheck.surely_valid("a", {"type": "string", "format": "email"})
    assert not schemacheck.surely_valid(1, {"oneOf": [{"type": "integer"}, {"multipleOf": 2}]})
    assert not schemacheck.surely_valid([{"a": 1}, {"a": 1}], {"type": "array", "uniqueItems": True})


def test_checkpoint_spec_validation_does_not_import_jsonschema(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(VALID["oci-config.schema.json"]))
    code = ("import sys; from runc_ckpt.runtime import ocispec; ocispec.load(sys.argv[1]); "
            "print('jsonschema' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    (tmp_path / "config.json").write_text(json.dumps({"ociVersion": ""}))
    bad = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert bad.returncode != 0 and "ociVersion" in bad.stderr
