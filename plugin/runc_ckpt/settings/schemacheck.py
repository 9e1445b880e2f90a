"""A quick yes-or-not-sure check of a document against our shipped JSON schemas, without jsonschema.

Importing jsonschema costs ~130 ms, as much as runc's own checkpoint of a
small container, and every checkpoint validates the bundle's config.json.
Almost every document is valid, so settings.config.validate() asks this
module first: `surely_valid()` walks the schema keywords our schemas use
(type, enum, const, properties, required, additionalProperties, items,
minItems, uniqueItems, minLength, pattern, minimum, maximum,
exclusiveMinimum, oneOf, local $ref) and answers True only when every one
holds. Anything else -- a failed keyword, a keyword it does not know, a
case it is unsure of -- answers False, and the caller runs jsonschema
itself, which then has the last word and writes the error. So validation is
exactly as strict as before: this can only ever skip jsonschema for a
document jsonschema accepts (tests/unit/test_schemacheck.py compares the two).
"""

from __future__ import annotations

import re
from functools import lru_cache

from runc_ckpt.base.jsondoc import JSONObject

_KNOWN = frozenset(("type", "enum", "const", "properties", "required", "additionalProperties", "items",
                    "minItems", "uniqueItems", "minLength", "pattern", "minimum", "maximum",
                    "exclusiveMinimum", "oneOf", "$ref", "$defs", "$schema", "title", "description"))


class _Unsure(Exception):
    """The document fails a keyword: ask jsonschema (for the verdict and the error)."""


class _Unknown(_Unsure):
    """A keyword or case this module does not decide; never read as "this branch fails" (oneOf)."""


def _is_type(value: object, name: str) -> bool:
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "string":
        return isinstance(value, str)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "null":
        return value is None
    if isinstance(value, bool):
        return False
    if name == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if name == "number":
        return isinstance(value, (int, float))
    raise _Unknown


@lru_cache(maxsize=64)
def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(text)


def _unique(items: list[object]) -> bool:
    seen: set[tuple[type, object]] = set()
    for item in items:
        if isinstance(item, (dict, list, float)):
            raise _Unknown             # jsonschema's deep equality: leave it to jsonschema
        key = (type(item), item)
        if key in seen:
            return False
        seen.add(key)
    return True


def _check(value: object, schema: object, root: JSONObject) -> None:
    if schema is True:
        return
    if not isinstance(schema, dict) or not _KNOWN.issuperset(schema):
        raise _Unknown
    ref = schema.get("$ref")
    if ref is not None:
        if not isinstance(ref, str) or not ref.startswith("#/$defs/"):
            raise _Unknown
        _check(value, root["$defs"][ref[len("#/$defs/"):]], root)
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not any(_is_type(value, k) for k in kinds):
            raise _Unsure
    if "enum" in schema and not any(value == v and type(value) is type(v) for v in schema["enum"]):
        raise _Unsure
    if "const" in schema and not (value == schema["const"] and type(value) is type(schema["const"])):
        raise _Unsure
    if "oneOf" in schema:
        matches = 0
        for sub in schema["oneOf"]:
            try:
                _check(value, sub, root)
                matches += 1
            except _Unknown:
                raise
            except _Unsure:
                pass
        if matches != 1:
            raise _Unsure
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", ()):
            if key not in value:
                raise _Unsure
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                _check(item, props[key], root)
            elif extra is False:
                raise _Unsure
            elif extra is not True:
                _check(item, extra, root)
    elif isinstance(value, list):
        if "items" in schema:
            for item in value:
                _check(item, schema["items"], root)
        if len(value) < schema.get("minItems", 0):
            raise _Unsure
        if schema.get("uniqueItems") and not _unique(value):
            raise _Unsure
    elif isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            raise _Unsure
        if "pattern" in schema and not _pattern(schema["pattern"]).search(value):
            raise _Unsure
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and not value >= schema["minimum"]:
            raise _Unsure
        if "maximum" in schema and not value <= schema["maximum"]:
            raise _Unsure
        if "exclusiveMinimum" in schema and not value > schema["exclusiveMinimum"]:
            raise _Unsure


def surely_valid(value: object, schema: JSONObject) -> bool:
    """True only if value certainly satisfies schema; False: ask jsonschema."""
    try:
        _check(value, schema, schema)
    except (_Unsure, KeyError, TypeError, RecursionError, re.error):
        return False
    return True
