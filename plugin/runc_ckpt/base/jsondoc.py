"""The type of a parsed JSON document (stdlib only).

A document read from a bundle, an archive, a registry or another tool is
checked where it is used (a schema, isinstance, a try around the lookup), not
by its static type: JSONObject names what json.loads gave for an object, so a
signature says "a JSON object" rather than a bare dict.
"""

TYPE_CHECKING = False  # typing's flag, without importing typing (base/record.py says why)
if TYPE_CHECKING:
    from typing import Any, TypeAlias

    JSONObject: TypeAlias = dict[str, Any]
else:
    JSONObject = dict
