"""`/slicer/mrml/properties` the way Slicer computes it: a node's PrintSelf text as nested JSON.

Slicer's WebServer reads `str(node)` line by line: indentation opens and closes groups,
`key: value` lines become entries, values are typed ("(1, 2, 3)" -> [1, 2, 3], "true" ->
True, "(none)" dropped), a line without a colon names the next group.
"""

from __future__ import annotations

import re
from typing import Any

_VECTOR_IN_BRACKETS = re.compile(r"[(\[]([0-9,.\- ]+)[)\]]")
_BARE_VECTOR = re.compile(r"^([0-9,.\- ]+)$")
_NUMBER = re.compile(r"^([0-9.\-]+)$")
_WORDS = {"true": True, "false": False, "on": True, "off": False}


def _numbers(text: str, fractional: bool) -> list[Any]:
    parts = [p for p in re.split(r",\s*|\s+", text.strip()) if p]
    return [float(p) if fractional else int(p) for p in parts]


def typed(value: str) -> Any:
    """The typed value of one PrintSelf field (None means: leave the key out)."""
    low = value.lower()
    if low == "(none)":
        return None
    if low in _WORDS:
        return _WORDS[low]
    try:
        m = _VECTOR_IN_BRACKETS.match(value)
        if m:
            return _numbers(m.group(1), "." in value)
        m = _BARE_VECTOR.match(value)
        if m and len(_numbers(m.group(1), "." in value)) > 1:
            return _numbers(m.group(1), "." in value)
        if _NUMBER.match(value):
            return float(value) if "." in value else int(value)
    except ValueError:
        return value
    return value


def node_properties(node: Any) -> dict[str, Any]:
    content: dict[str, Any] = {}
    path: list[str] = []
    levels = [0, 2]
    previous = 2
    key = ""
    for line in str(node).split("\n"):
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent == 0:
            continue  # "vtkMRMLScalarVolumeNode (0x...)"
        indent = max(indent, 2)
        if indent > previous:
            path.append(key)
            levels.append(indent)
            previous = indent
        elif indent < previous:
            while levels and indent != levels[-1] and path:
                levels.pop()
                path.pop()
            previous = indent
        if ":" in line:
            key, value = line.split(":", 1)
            key, value = key.strip(), value.strip()
            target = content
            for part in path:
                if not isinstance(target.get(part), dict):
                    target[part] = {}
                target = target[part]
            parsed = typed(value)
            if parsed is not None:
                target[key] = parsed
        else:
            key = line.strip()
    return content
