"""What any JSON body must satisfy before it reaches a service, whatever its route.

Python's json module accepts things no database should store: lone UTF-16 surrogates
(``"\\ud800"``), which cannot be encoded as UTF-8; NUL characters, which PostgreSQL's
jsonb refuses; numbers like ``1e400`` that become infinity; and nesting deep enough to
exhaust the recursion limit when serialised again. Each is a 400 at the door instead of
a 500, or a poisoned row, later."""

from __future__ import annotations

import math
import re
from typing import Any

from kernel.limits import MAX_DEPTH
from kernel.problems import pointer_segment


def _string_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (lone surrogate)"
    return None


# A lone surrogate or a NUL can only reach a parsed string through a \\u escape (raw bytes
# that encode one are invalid UTF-8, and json refuses raw control characters), so a
# body without such an escape needs no per-string check.
_RISKY_ESCAPE = re.compile(rb"\\u(?:[dD][89a-fA-F][0-9a-fA-F]{2}|0000)")


def may_hold_unstorable_strings(body: bytes) -> bool:
    return _RISKY_ESCAPE.search(body) is not None


def finite_float(text: str) -> float:
    """``parse_float`` for json.loads: 1e400 is not a number we can store."""
    value = float(text)
    if not math.isfinite(value):
        raise NonFiniteNumber(text[:20])
    return value


class NonFiniteNumber(ValueError):
    pass


def _is_clean(value: Any, max_depth: int, check_strings: bool) -> bool:
    """The fast pass: no paths built, since nearly every body is clean."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth >= max_depth or (check_strings and any(map(_string_problem, item))):
                return False
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            if depth >= max_depth:
                return False
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            if check_strings and _string_problem(item):
                return False
        elif isinstance(item, float) and not math.isfinite(item):
            return False
    return True


def json_problem(
    value: Any, *, max_depth: int = MAX_DEPTH, check_strings: bool = True
) -> tuple[str, str] | None:
    """The JSON Pointer and reason of the first unstorable part of ``value``, or None.
    Iterative, so depth costs no recursion. ``check_strings=False`` checks only depth
    and numbers (for bodies ``may_hold_unstorable_strings`` has cleared)."""
    if _is_clean(value, max_depth, check_strings):
        return None
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            problem = _string_problem(item) if check_strings else None
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
                    problem = _string_problem(key) if check_strings else None
                    if problem:
                        return path or "/", f"a key {problem}"
                    stack.append((child, f"{path}/{pointer_segment(key)}", depth + 1))
            else:
                stack.extend((child, f"{path}/{i}", depth + 1) for i, child in enumerate(item))
    return None


def shape_problems(
    value: Any, path: str, *, max_depth: int, max_keys: int, max_items: int
) -> list[tuple[str, str]]:
    """Where a payload is nested deeper, or has wider objects or arrays, than allowed:
    (JSON Pointer, reason) pairs, at most 20. Iterative."""
    found: list[tuple[str, str]] = []
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack and len(found) < 20:
        item, where, depth = stack.pop()
        if not isinstance(item, dict | list):
            continue
        if depth >= max_depth:
            found.append((where or "/", f"is nested more than {max_depth} levels deep"))
            continue
        if isinstance(item, dict):
            if len(item) > max_keys:
                found.append((where or "/", f"has more than {max_keys} keys"))
                continue
            stack.extend(
                (child, f"{where}/{pointer_segment(key)}", depth + 1) for key, child in item.items()
            )
        else:
            if len(item) > max_items:
                found.append((where or "/", f"has more than {max_items} items"))
                continue
            stack.extend((child, f"{where}/{i}", depth + 1) for i, child in enumerate(item))
    return found
