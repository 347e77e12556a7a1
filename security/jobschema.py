"""Per-queue JSON Schemas (Draft 2020-12) for job data. Plain values in, field errors
out. Formats are asserted, not just annotated (email, uuid, uri, date-time, ...), and a
schema may only refer to itself: a ``$ref`` to anything but a local ``#...`` is refused
when the schema is saved, and the validator's retriever refuses every fetch, so nothing
is ever fetched.

A schema is checked against the 2020-12 meta-schema by ``jsonschema`` (offline: it does
not resolve ``$schema`` URLs) and compiled by ``jsonschema-rs``, which validates jobs
(about 20 times faster per job than ``jsonschema``); a schema either refuses to compile
(a regex the Rust engine rejects, say) is refused when saved."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from kernel.problems import FieldError, FlashqError, pointer_segment

MAX_ERRORS = 50
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"


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
    declared = schema.get("$schema", DRAFT_2020_12)
    if not isinstance(declared, str) or declared.rstrip("#") != DRAFT_2020_12:
        return f"Only JSON Schema 2020-12 is supported: $schema must be {DRAFT_2020_12!r}."
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return f"Not a valid JSON Schema (2020-12): {exc.message}"
    remote = [ref for ref in _refs(schema) if not ref.startswith("#")]
    if remote:
        return f"Only local references (#...) are allowed, not {remote[0][:100]!r}."
    try:
        _compile(schema)
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError) as exc:
        return f"The schema cannot be compiled: {str(exc).splitlines()[0][:200]}"
    return None


def _never_fetch(uri: str) -> Any:
    raise ValueError(f"remote schemas are never fetched ({uri[:100]})")


def _compile(schema: dict[str, Any]) -> jsonschema_rs.Draft202012Validator:
    return jsonschema_rs.Draft202012Validator(schema, validate_formats=True, retriever=_never_fetch)


@lru_cache(maxsize=64)
def _validator(text: str) -> jsonschema_rs.Draft202012Validator:
    return _compile(json.loads(text))


def validator_for(schema: dict[str, Any]) -> jsonschema_rs.Draft202012Validator:
    """One compiled validator per schema (cached), for a whole batch."""
    return _validator(json.dumps(schema, sort_keys=True))


def schema_errors(
    validator: jsonschema_rs.Draft202012Validator, value: Any, path: str
) -> list[FieldError]:
    """Every place ``value`` fails the schema, as JSON Pointers under ``path``."""
    if validator.is_valid(value):  # the common case, without building errors
        return []
    errors = []
    for error in validator.iter_errors(value):
        pointer = "".join(f"/{pointer_segment(part)}" for part in error.instance_path)
        errors.append(FieldError(f"{path}{pointer}", error.message[:300]))
        if len(errors) >= MAX_ERRORS:
            break
    return sorted(errors, key=lambda error: error.path)
