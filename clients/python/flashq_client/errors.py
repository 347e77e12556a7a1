"""Errors raised by the client: one class per kind of answer, all ``FlashqError``.

An error answer from flashQ is RFC 9457 problem+json (``type``, ``title``, ``status``,
``detail``, ``code`` and, for bad fields, ``errors: [{"path", "message"}]`` with JSON
Pointer paths into the request). Each exception carries those, and the
``X-Request-ID`` the server gave the call, which the operator finds in the audit trail.
No exception ever holds the token, a request's headers or a job's payload."""

from __future__ import annotations

from typing import Any, TypedDict


class FieldProblem(TypedDict):
    """One bad field: a JSON Pointer into the request, and what is wrong with it."""

    path: str
    message: str


class FlashqError(Exception):
    """Any failed call. ``status`` is the HTTP status (``None`` when no answer came)."""

    status: int | None
    code: str
    detail: str
    errors: list[FieldProblem]
    request_id: str | None

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        code: str = "error",
        errors: list[FieldProblem] | None = None,
        request_id: str | None = None,
        title: str = "",
    ) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = list(errors or [])
        self.request_id = request_id
        self.title = title
        super().__init__(self._message())

    def _message(self) -> str:
        head = f"{self.status} {self.code}" if self.status is not None else self.code
        text = f"{head}: {self.detail}"
        if self.errors:
            fields = "; ".join(f"{error['path']}: {error['message']}" for error in self.errors[:10])
            more = f" (+{len(self.errors) - 10} more)" if len(self.errors) > 10 else ""
            text += f" [{fields}{more}]"
        if self.request_id:
            text += f" (request {self.request_id})"
        return text

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickles (to another process, say) with every field, not only the message.
        return (_restore, (type(self), dict(self.__dict__)))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"detail={self.detail!r}, request_id={self.request_id!r})"
        )


class InvalidInput(FlashqError):
    """400, 411, 413, 415 or 422: the request was refused as it stands; ``errors`` names
    the fields (``card-number-detected`` and ``payload_too_large`` among them)."""


class Unauthorized(FlashqError):
    """401: the token is missing, unknown, expired or revoked."""


class Forbidden(FlashqError):
    """403: the token may not do this on this queue (or not from this address)."""


class NotFound(FlashqError):
    """404: no such job or queue (or one this token may not see)."""


class Conflict(FlashqError):
    """409: a stale lease (``lease_conflict``), a job in the wrong state
    (``state_conflict``) or an idempotency key held by another token (``key_conflict``)."""


class RateLimited(FlashqError):
    """429: over a rate limit; ``retry_after`` is the server's ``Retry-After`` in seconds."""

    retry_after: float | None

    def __init__(self, detail: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(detail, **kwargs)


class Unavailable(FlashqError):
    """502, 503 or 504: the server (or the proxy in front of it) could not answer now."""

    retry_after: float | None

    def __init__(self, detail: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(detail, **kwargs)


class ConnectionFailed(FlashqError):
    """No answer: the connection could not be made, or broke, after every retry."""


class Interrupted(FlashqError):
    """The client's stop signal (``Client(stop=...)``, ``Client.interrupt()``) cut a
    pause between retries short: the call gave up without its answer. What an attempt
    before the pause did is unknown, as after ``ConnectionFailed``."""


class FieldDecryptionError(FlashqError):
    """A sealed field of a job's data could not be opened (``flashq_client.fields``):
    ``code`` is ``field_key_missing`` (no key with its id, or no keys at all) or
    ``field_open_failed`` (a wrong key, a changed value, or one sealed for another queue
    or field). The message names the field's path and the key id, never the value or a
    key. A worker fails the job with that code."""


def with_errors(error: FlashqError, errors: list[FieldProblem]) -> FlashqError:
    """A copy of ``error`` (same class and fields) naming ``errors`` instead."""
    return _restore(type(error), {**error.__dict__, "errors": list(errors)})


def _restore(cls: type[FlashqError], state: dict[str, Any]) -> FlashqError:
    error = cls.__new__(cls)
    error.__dict__.update(state)
    Exception.__init__(error, error._message())
    return error


_BY_STATUS: dict[int, type[FlashqError]] = {
    400: InvalidInput,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    411: InvalidInput,
    413: InvalidInput,
    415: InvalidInput,
    422: InvalidInput,
    429: RateLimited,
    502: Unavailable,
    503: Unavailable,
    504: Unavailable,
}


def error_class(status: int) -> type[FlashqError]:
    """The exception class of an answer with this status."""
    return _BY_STATUS.get(status, FlashqError)


__all__ = [
    "Conflict",
    "ConnectionFailed",
    "FieldDecryptionError",
    "FieldProblem",
    "FlashqError",
    "Forbidden",
    "Interrupted",
    "InvalidInput",
    "NotFound",
    "RateLimited",
    "Unauthorized",
    "Unavailable",
    "error_class",
]
