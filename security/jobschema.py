"""Per-queue JSON Schemas (Draft 2020-12) for job data. Plain values in, field errors
out. Formats are asserted, not just annotated (email, uuid, uri, date-time, ...), and a
schema may only refer to itself: a ``$ref`` to anything but a local ``#...`` is refused
when the schema is saved, so nothing is ever fetched."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError

from flashq_project.problems import FieldError, FlashqError, pointer_segment

MAX_ERRORS = 50
_FORMATS = FormatChecker()


class SchemaValidationFailed(FlashqError):
    status = 422
    code = "schema_validation_failed"
    title = "Schema validation failed"


def _refs(value: Any) -> Iterator[str]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if key in ("$ref", "$dynamicRef") and isinstance(child, str):
                    yield child
                stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)


def schema_problem(schema: Any) -> str | None:
    """Why ``schema`` cannot be a queue's schema, or None."""
    if not isinstance(schema, dict):
        return "A schema is a JSON object."
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return f"Not a valid JSON Schema (2020-12): {exc.message}"
    remote = [ref for ref in _refs(schema) if not ref.startswith("#")]
    if remote:
        return f"Only local references (#...) are allowed, not {remote[0][:100]!r}."
    return None


@lru_cache(maxsize=64)
def _validator(text: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads(text), format_checker=_FORMATS)


def validator_for(schema: dict[str, Any]) -> Draft202012Validator:
    """One compiled validator per schema (cached), for a whole batch."""
    return _validator(json.dumps(schema, sort_keys=True))


def schema_errors(validator: Draft202012Validator, value: Any, path: str) -> list[FieldError]:
    """Every place ``value`` fails the schema, as JSON Pointers under ``path``."""
    errors = []
    for error in validator.iter_errors(value):
        pointer = "".join(f"/{pointer_segment(part)}" for part in error.absolute_path)
        errors.append(FieldError(f"{path}{pointer}", error.message[:300]))
        if len(errors) >= MAX_ERRORS:
            break
    return sorted(errors, key=lambda error: error.path)
