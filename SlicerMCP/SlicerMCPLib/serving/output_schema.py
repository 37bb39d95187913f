"""Output schemas that clients can check quickly: the same fields, fewer keywords per value.

MCP clients re-validate every structured result against the tool's output schema; the Python
SDK does it with `jsonschema`, which costs ~10 µs per keyword it visits. pydantic's schema
for a 100-node `NodeList` visits ~40 keywords per node (`$ref`s, `anyOf` for each `X | None`,
`prefixItems` + `minItems` + `maxItems` for each coordinate tuple), which made the client's
check cost more than the whole call. `compact_schema` publishes the same shape flat:

- `$ref`s into `$defs` are inlined (no reference resolution per value);
- `X | None` becomes `"type": ["x", "null"]` instead of an `anyOf` of two schemas;
- fixed-length number tuples (coordinates, colours, ranges) become `"type": "array"` with the
  length and the element type in the description.

The server still validates every result with the pydantic model before sending it.
"""

from __future__ import annotations

import copy
from typing import Any

_NUMBER_TYPES = ("number", "integer")


def compact_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A flat equivalent of `schema` (a pydantic model's JSON schema); recursive schemas are left as they are."""
    defs = schema.get("$defs", {})
    if _recursive(defs):
        return schema
    out = _compact({k: v for k, v in schema.items() if k != "$defs"}, defs)
    assert isinstance(out, dict)
    return out


def _recursive(defs: dict[str, Any]) -> bool:
    def refs(node: Any) -> set[str]:
        if isinstance(node, dict):
            found = {node["$ref"].rsplit("/", 1)[-1]} if isinstance(node.get("$ref"), str) else set()
            for value in node.values():
                found |= refs(value)
            return found
        if isinstance(node, list):
            return set().union(*(refs(v) for v in node)) if node else set()
        return set()

    graph = {name: refs(body) for name, body in defs.items()}

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == target or (nxt not in seen and reaches(nxt, target, seen | {nxt})):
                return True
        return False

    return any(reaches(name, name, {name}) for name in graph)


def _compact(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_compact(v, defs) for v in node]
    if not isinstance(node, dict):
        return node
    if isinstance(node.get("$ref"), str):
        target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _compact(merged, defs)
    out = {k: _compact(v, defs) for k, v in node.items()}
    nullable = _nullable_type(out)
    if nullable is not None:
        return nullable
    return _plain_tuple(out)


def _nullable_type(node: dict[str, Any]) -> dict[str, Any] | None:
    """`{"anyOf": [S, {"type": "null"}]}` -> S with `"type": [S.type, "null"]`, when S has one plain type."""
    options = node.get("anyOf")
    if not isinstance(options, list) or len(options) != 2 or {"type": "null"} not in options:
        return None
    other = options[0] if options[1] == {"type": "null"} else options[1]
    if not isinstance(other.get("type"), str) or any(
        k in other for k in ("anyOf", "oneOf", "allOf", "const")
    ):
        return None
    merged = {**other, **{k: v for k, v in node.items() if k != "anyOf"}}
    merged["type"] = [other["type"], "null"]
    if isinstance(other.get("enum"), list):  # an enum lists its values: null must be one of them
        merged["enum"] = [*other["enum"], None]
    return merged


def _plain_tuple(node: dict[str, Any]) -> dict[str, Any]:
    """A tuple of numbers (`prefixItems` of one number type, fixed length) -> a described array."""
    items = node.get("prefixItems")
    if not isinstance(items, list) or not items:
        return node
    kinds = {item.get("type") for item in items if isinstance(item, dict) and len(item) == 1}
    if len(kinds) != 1 or len(items) != node.get("minItems") or len(items) != node.get("maxItems"):
        return node
    kind = kinds.pop()
    if kind not in _NUMBER_TYPES:
        return node
    out = {k: v for k, v in node.items() if k not in ("prefixItems", "minItems", "maxItems")}
    noun = "integers" if kind == "integer" else "numbers"
    described = f"{len(items)} {noun}"
    out["description"] = f"{described}; {out['description']}" if out.get("description") else described
    return out
