"""Errors every floor may raise, and the one builder of RFC 9457 problem+json bodies.

``FlashqError`` carries a stable ``code``, an HTTP ``status`` and, for field problems,
``errors`` with JSON Pointer paths. Services raise them; the API's exception handler
and the project's 4xx/5xx pages render them with ``problem_body``, so every error the
platform answers has one shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CONTENT_TYPE = "application/problem+json"


@dataclass(frozen=True)
class FieldError:
    path: str  # JSON Pointer into the request body, e.g. /jobs/3/priority
    message: str


MAX_SEGMENT = 100


def pointer_segment(key: object) -> str:
    """One JSON Pointer segment (RFC 6901): ``~`` and ``/`` escaped, so a key the client
    chose can never pose as structure (``"tags/1"`` is one segment, ``tags~11``); cut at
    MAX_SEGMENT characters."""
    return str(key).replace("~", "~0").replace("/", "~1")[:MAX_SEGMENT]


class FlashqError(Exception):
    status = 400
    code = "bad_request"
    title = "Bad request"

    def __init__(self, detail: str, *, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []


class InvalidInput(FlashqError):
    status = 400
    code = "invalid_input"
    title = "Invalid input"


class PayloadTooLarge(FlashqError):
    status = 413
    code = "payload_too_large"
    title = "Payload too large"


class LengthRequired(FlashqError):
    status = 411
    code = "length_required"
    title = "Length required"


class ServiceUnavailable(FlashqError):
    """The database is down, restarting or out of connections: nothing was done, and
    the same request may be sent again after ``Retry-After`` seconds."""

    status = 503
    code = "service_unavailable"
    title = "Service unavailable"
    retry_after_seconds = 5

    def __init__(self, detail: str = "The service is briefly unavailable; retry shortly.") -> None:
        super().__init__(detail)


class CardNumberDetected(FlashqError):
    """A payment card number or card secret in a payload: 422, nothing stored. ``masked``
    holds at most the first 6 and last 4 digits of each number, for the audit record."""

    status = 422
    code = "card-number-detected"
    title = "Card number detected"

    def __init__(
        self, detail: str, *, errors: list[FieldError], masked: list[str] | None = None
    ) -> None:
        super().__init__(detail, errors=errors)
        self.masked = masked or []


class PayloadUnreadable(FlashqError):
    """A job's stored payload failed to decrypt (a missing key, or an altered row). The
    cause goes to the server log; the caller learns which job, not why."""

    status = 500
    code = "payload_unreadable"
    title = "Payload unreadable"


class RateLimited(FlashqError):
    """Over a rate limit: 429 with ``Retry-After`` and the RateLimit-* headers."""

    status = 429
    code = "rate_limited"
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after_s: float, limit: int, reset_s: float) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s
        self.limit = limit
        self.reset_s = reset_s


def problem_body(
    *, status: int, code: str, title: str, detail: str, errors: list[FieldError] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"urn:flashq:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if errors:
        body["errors"] = [{"path": error.path, "message": error.message} for error in errors]
    return body


def error_body(error: FlashqError) -> dict[str, Any]:
    return problem_body(
        status=error.status,
        code=error.code,
        title=error.title,
        detail=error.detail,
        errors=error.errors,
    )
