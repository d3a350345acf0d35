"""A small JSON-schema checker for the subset our parameters and bodies use.

Supported: type (object, array, string, integer, number, boolean), properties,
required, additionalProperties: false, items, minItems/maxItems, enum,
minLength/maxLength, pattern, minimum/maximum. Anything else in a schema is a
description for readers and is not enforced.
"""

from __future__ import annotations

import re
from typing import Any

from domain.errors import InvalidInput

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def _is(value: Any, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, _TYPES[kind])


def check(value: Any, schema: dict[str, Any], where: str) -> None:
    """Raise InvalidInput saying where `value` breaks `schema`; return quietly when it fits."""
    kind = schema.get("type")
    if kind is not None and not _is(value, kind):
        raise InvalidInput(f"{where} must be of type {kind}")
    if "enum" in schema and value not in schema["enum"]:
        choices = ", ".join(str(c) for c in schema["enum"])
        raise InvalidInput(f"{where} must be one of: {choices}")
    if isinstance(value, str):
        _check_string(value, schema, where)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise InvalidInput(f"{where} must be at least {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise InvalidInput(f"{where} must be at most {schema['maximum']}")
    elif isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            raise InvalidInput(f"{where} needs at least {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise InvalidInput(f"{where} takes at most {schema['maxItems']} items")
        for i, item in enumerate(value):
            check(item, schema.get("items", {}), f"{where}[{i}]")
    elif isinstance(value, dict):
        _check_object(value, schema, where)


def _check_string(value: str, schema: dict[str, Any], where: str) -> None:
    if len(value) < schema.get("minLength", 0):
        raise InvalidInput(f"{where} must have at least {schema['minLength']} characters")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        raise InvalidInput(f"{where} must have at most {schema['maxLength']} characters")
    if "pattern" in schema and not re.search(schema["pattern"], value):
        raise InvalidInput(f"{where} must match {schema['pattern']}")


def _check_object(value: dict[str, Any], schema: dict[str, Any], where: str) -> None:
    props: dict[str, Any] = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in value:
            raise InvalidInput(f"{where}.{name} is required")
    for name, item in value.items():
        if name in props:
            check(item, props[name], f"{where}.{name}")
        elif schema.get("additionalProperties") is False:
            raise InvalidInput(f"{where}.{name} is not a known field")
