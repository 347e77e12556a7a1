"""Validators of the queue models' fields, kept apart so the models read as the data."""

from __future__ import annotations

from django.core.exceptions import ValidationError

from security.cards import has_card_number, validate_pointer_list
from security.jobschema import schema_problem
from security.masking import DEFAULT_SENSITIVE_FIELDS


def validate_allowlist(value: object) -> None:
    if value is None:
        return
    try:
        validate_pointer_list(value)
    except ValueError as exc:
        raise ValidationError(str(exc), code="invalid_allowlist") from exc


def validate_no_card_number(value: str) -> None:
    # A queue's name is shown to everyone who may see the queue and kept in the trail.
    if has_card_number(value):
        raise ValidationError("May not hold a payment card number.", code="card_number")


def default_sensitive_fields() -> list[str]:
    return list(DEFAULT_SENSITIVE_FIELDS)


def default_pii_fields() -> list[str]:
    return ["email", "name", "personalData"]


def validate_field_names(value: object) -> None:
    if not isinstance(value, list) or not all(
        isinstance(name, str) and 0 < len(name) <= 200 for name in value
    ):
        raise ValidationError('A list of field names, e.g. ["ssn", "password"].')


def validate_job_schema(value: object) -> None:
    problem = None if value is None else schema_problem(value)
    if problem:
        raise ValidationError(problem, code="invalid_schema")
