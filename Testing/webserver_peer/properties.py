"""`/slicer/mrml/properties` the way Slicer computes it: a node's PrintSelf text as nested JSON.

Mirrors `SlicerRequestHandler.nodeProperties` and its inner `stringToData` (Slicer main,
Modules/Scripted/WebServer/WebServerLib/SlicerRequestHandler.py), quirks included:
- values are typed: "(1, 2, 3)" -> [1, 2, 3], "007" -> 7, "0.50" -> 0.5, "true"/"on" -> True,
  "12, 13" -> [12, 13]; "(none)" leaves the key out;
- a line whose value looks numeric but isn't a number ("1.2.840.10008") raises inside the
  per-line `try`, and Slicer's bare `except` prints the traceback and drops the line;
- keys and values are only left-stripped (`lstrip`), so trailing blanks stay;
- indentation opens and closes groups; a line without a colon names the next group.
"""

from __future__ import annotations

import logging
import re
from typing import Any

log = logging.getLogger("webserver_peer")

# stringToData: the two bracketed patterns are tried with re.match (anchored at the start only)
_IN_PARENTHESES = re.compile(r"\(([0-9,\.\- ]+)\)")
_IN_BRACKETS = re.compile(r"\[([0-9,\.\- ]+)\]")
_BARE_VECTOR = re.compile(r"^([0-9,\.\- ]+)$")
_NUMBER = re.compile(r"^([0-9\.\-]+)$")
_SPLIT = re.compile(r",[ ]*| +")
_WORDS = {"true": True, "false": False, "on": True, "off": False}


def _numbers(text: str, whole: str) -> list[Any]:
    """A vector: floats when the whole value has a dot anywhere, else ints (ValueError propagates)."""
    parts = _SPLIT.split(text.strip())
    return [float(p) for p in parts] if "." in whole else [int(p) for p in parts]


def typed(value: str) -> Any:
    """stringToData: the typed value of one field; None leaves the key out. May raise ValueError."""
    low = value.lower()
    if low == "(none)":
        return None
    if low in _WORDS:
        return _WORDS[low]
    m = _IN_PARENTHESES.match(value) or _IN_BRACKETS.match(value)
    if m:
        return _numbers(m.group(1), value)
    m = _BARE_VECTOR.match(value)
    if m and len(_SPLIT.split(m.group(1).strip())) > 1:
        return _numbers(m.group(1), value)
    if _NUMBER.match(value):
        return float(value) if "." in value else int(value)
    return value


def node_properties(node: Any) -> dict[str, Any]:
    """nodeProperties: walks `str(node)`; any exception on a line drops that line (bare except)."""
    content: dict[str, Any] = {}
    keys: list[str] = []
    key = ""
    previous = 2  # level 0 is the line with the object pointer
    levels = [0, 2]
    for line in str(node).split("\n"):
        try:
            if line.lstrip() == "":
                continue
            indent = len(line) - len(line.lstrip())
            if indent == 0:
                continue
            indent = max(indent, 2)
            if indent > previous:
                keys.append(key)
                levels.append(indent)
                previous = indent
            elif indent < previous:
                while indent != levels[-1]:  # IndexError on an unmatched dedent: the line is dropped
                    levels.pop()
                    keys.pop()
                previous = indent
            if ":" in line:
                key, value = line.split(":", maxsplit=1)
                key = key.lstrip()
                value = value.lstrip()
                target = content
                for k in keys:
                    if not isinstance(target.get(k), dict):
                        target[k] = {}  # "this was considered as a value, but it turns out it is a group"
                    target = target[k]
                parsed = typed(value)
                if parsed is not None:
                    target[key] = parsed
            else:
                key = line.strip()
        except Exception as exc:  # Slicer: bare `except:` + traceback.print_exc(), then the next line
            log.info(
                "properties of %s: dropped line %r (%s: %s)", node.GetID(), line, type(exc).__name__, exc
            )
    return content
