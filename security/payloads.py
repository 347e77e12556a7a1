"""What any JSON body must satisfy before it reaches a service, whatever its route.

Python's json module accepts things no database should store: lone UTF-16 surrogates
(``"\\ud800"``), which cannot be encoded as UTF-8; NUL characters, which PostgreSQL's
jsonb refuses; numbers like ``1e400`` that become infinity; and nesting deep enough to
exhaust the recursion limit when serialised again. Each is a 400 at the door instead of
a 500, or a poisoned row, later."""

from __future__ import annotations

import math
from typing import Any

MAX_DEPTH = 64


def _string_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (lone surrogate)"
    return None


def json_problem(value: Any, *, max_depth: int = MAX_DEPTH) -> tuple[str, str] | None:
    """The JSON Pointer and reason of the first unstorable part of ``value``, or None.
    Iterative, so depth costs no recursion."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            problem = _string_problem(item)
            if problem:
                return path or "/", f"a string {problem}"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return path or "/", "a number is too large"
        elif isinstance(item, dict | list):
            if depth >= max_depth:
                return path or "/", f"is nested more than {max_depth} levels deep"
            if isinstance(item, dict):
                for key, child in item.items():
                    problem = _string_problem(key)
                    if problem:
                        return path or "/", f"a key {problem}"
                    stack.append((child, f"{path}/{_pointer_escape(key)}", depth + 1))
            else:
                stack.extend((child, f"{path}/{i}", depth + 1) for i, child in enumerate(item))
    return None


def _pointer_escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")[:100]
