"""The API's exception handler: every error becomes RFC 9457 problem+json through the
one builder in kernel.problems."""

from __future__ import annotations

import math
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response

from kernel.problems import (
    CONTENT_TYPE,
    FieldError,
    FlashqError,
    RateLimited,
    ServiceUnavailable,
    error_body,
    pointer_segment,
    problem_body,
)
from security.authentication import INVALID


def _flatten(detail: Any, path: str = "") -> list[FieldError]:
    if isinstance(detail, dict):
        found = []
        for key, value in detail.items():
            sub = (
                path if key in ("non_field_errors", "detail") else f"{path}/{pointer_segment(key)}"
            )
            found.extend(_flatten(value, sub))
        return found
    if isinstance(detail, list):
        if all(isinstance(item, str) for item in detail):
            return [FieldError(path or "/", str(item)) for item in detail]
        found = []
        for index, item in enumerate(detail):
            found.extend(_flatten(item, f"{path}/{index}"))
        return found
    return [FieldError(path or "/", str(detail))]


def problem_response(
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = problem_body(status=status, code=code, title=title, detail=detail, errors=errors)
    return Response(body, status=status, headers=headers, content_type=CONTENT_TYPE)


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, FlashqError):
        headers = {}
        if isinstance(exc, ServiceUnavailable):
            headers["Retry-After"] = str(exc.retry_after_seconds)
        if isinstance(exc, RateLimited):
            headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
            headers["RateLimit-Limit"] = str(exc.limit)
            headers["RateLimit-Remaining"] = "0"
            headers["RateLimit-Reset"] = str(math.ceil(exc.reset_s))
        return Response(
            error_body(exc), status=exc.status, headers=headers, content_type=CONTENT_TYPE
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
    wait = getattr(exc, "wait", None) if isinstance(exc, exceptions.Throttled) else None
    if wait is not None:
        headers["Retry-After"] = str(int(wait) + 1)
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        # The same answer for a missing, malformed, unknown, expired or revoked token.
        return problem_response(
            status=401,
            code="unauthenticated",
            title="Unauthenticated",
            detail=INVALID,
            headers=headers,
        )
    if isinstance(exc, exceptions.ValidationError):
        return problem_response(
            status=400,
            code="invalid_input",
            title="Invalid input",
            detail="The request has invalid fields.",
            errors=_flatten(exc.detail),
        )
    code = exc.default_code if isinstance(exc.default_code, str) else "error"
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.default_detail)
    title = code.replace("_", " ").capitalize()
    return problem_response(
        status=exc.status_code, code=code, title=title, detail=str(detail), headers=headers
    )
