"""Masking of sensitive fields: values under a key in a queue's ``sensitive_fields``
(matched case-insensitively, at any depth) become ``"[MASKED]"`` for anyone without an
explicit ``reveal`` grant on the queue. Free texts (a worker's error, a progress
message) have no fields to pick from, so without reveal they are masked whole."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Any

from django.conf import settings

MASKED = "[MASKED]"
DEFAULT_SENSITIVE_FIELDS = ("ssn", "creditCard", "password", "apiKey")


def masked(value: Any, fields: Iterable[str]) -> Any:
    """A copy of ``value`` with the sensitive fields' values masked."""
    names = frozenset(field.lower() for field in fields)
    if not names:
        return value
    return _mask(value, names)


def _mask(value: Any, names: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {
            key: MASKED if key.lower() in names else _mask(child, names)
            for key, child in value.items()
        }
    if isinstance(value, list):
        return [_mask(child, names) for child in value]
    return value


def masked_text(text: str | None) -> str | None:
    """A free text as shown without reveal: ``"[MASKED]"``, but an empty or missing text
    stays as it is, so a reader still sees whether there was one."""
    return MASKED if text else text


def pseudonym(subject: str) -> str:
    """A stable, keyed stand-in for the subject (HMAC-SHA256 with the token pepper)."""
    return hmac.new(
        settings.TOKEN_PEPPER.encode(), b"flashq-erasure\x00" + subject.encode(), hashlib.sha256
    ).hexdigest()
