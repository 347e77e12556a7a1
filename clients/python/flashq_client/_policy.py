"""The retry and error rules, written once for ``Client`` and ``AsyncClient`` and free
of I/O: each API method is a *plan*, a generator that yields ``Call`` (send this
request, give me its answer) and ``Pause`` (sleep this long) steps; ``retried`` wraps a
plan so that every ``Call`` is attempted and repeated by the rules below, and the
clients only carry the steps out (``httpx.Client`` and ``time``-free sleeps,
``httpx.AsyncClient`` and ``asyncio.sleep``). A push in producer mode yields ``Gather``
instead of its request: the client hands the body to its producer (``_producer`` for
``Client``, ``_gather`` for ``AsyncClient``), which sends it with others in one batch and
gives back this push's own answer or error.

Retries (at most ``max_retries``, jittered exponential backoff from 0.2 s to 10 s, or
the server's ``Retry-After`` when it gives one, up to 60 s):

- a ``Call`` that is safe to repeat (``idempotent``) on a connection failure of any
  kind and on 429, 502, 503 and 504;
- the others only when the request cannot have been acted on: the connection was never
  made (``httpx.ConnectError``, ``ConnectTimeout``, ``PoolTimeout``), or the answer was
  429 or 503 with ``Retry-After`` (flashQ sends that only after rolling the request back).
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx

from ._settings import Settings
from .errors import (
    ConnectionFailed,
    FieldProblem,
    FlashqError,
    Interrupted,
    RateLimited,
    Unavailable,
    error_class,
)

logger = logging.getLogger("flashq_client")

T = TypeVar("T")

BACKOFF_BASE_SECONDS = 0.2
BACKOFF_CAP_SECONDS = 10.0
#: A ``Retry-After`` longer than this is not waited for: the error is raised at once.
MAX_RETRY_AFTER_SECONDS = 60.0
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
#: Transport errors raised before any byte of the request was sent.
NEVER_SENT: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)


@dataclass(frozen=True, kw_only=True)
class Call:
    """One request to the API (``path`` relative to its root), and whether it is safe to
    repeat. ``read_timeout`` is the least read timeout (a long poll's)."""

    method: str
    path: str
    body: Any = None
    params: Mapping[str, str | int] | None = None
    idempotent: bool
    read_timeout: float | None = None
    #: The call's failure (after the retries) is thrown into the plan, which may carry
    #: on, instead of ending it.
    catch: bool = False

    def timeout(self, default: float) -> httpx.Timeout:
        return httpx.Timeout(default, read=max(default, self.read_timeout or 0.0))


@dataclass(frozen=True)
class Pause:
    """Sleep ``seconds``; ``before`` says what comes after it (for an ``Interrupted``)."""

    seconds: float
    before: str

    def interrupted(self) -> Interrupted:
        """The error of a call whose pause was cut short by the client's stop signal."""
        return Interrupted(f"stopped while waiting to {self.before}", code="interrupted")


@dataclass(frozen=True)
class Gather:
    """Producer mode: push ``body`` (a push's, keyed) to the queue at ``path`` together
    with other pushes; the client sends back this push's job (with ``created``) or
    raises this push's own error."""

    path: str
    body: dict[str, Any]


Step = Call | Pause | Gather
#: What a client sends back into a plan: a Call's answer, None after a Pause, the job
#: after a Gather.
Plan = Generator[Step, Any, T]
#: What a client sends back into ``retried``: an attempt's answer or transport error
#: (None after a Pause, the job after a Gather).
Outcome = httpx.Response | httpx.TransportError | Mapping[str, Any] | None


def backoff_delay(attempt: int) -> float:
    """Seconds before retry ``attempt`` (0-based): exponential from 0.2 s, capped at
    10 s, with jitter (between half and all of it)."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2.0**attempt)
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not secrets


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), if valid."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def problem(response: httpx.Response, retry_after: float | None) -> FlashqError:
    """The exception for an error answer (problem+json, or whatever a proxy sent)."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    errors: list[FieldProblem] = []
    if isinstance(body, dict) and ("code" in body or "detail" in body):
        code = str(body.get("code") or f"http_{status}")
        detail = str(body.get("detail") or body.get("title") or response.reason_phrase)
        title = str(body.get("title") or "")
        for item in body.get("errors") or []:
            if isinstance(item, dict):
                errors.append(
                    {"path": str(item.get("path", "")), "message": str(item.get("message", ""))}
                )
    else:
        # Not flashQ's answer (a proxy's page, say): its body is not repeated.
        code = f"http_{status}"
        detail = response.reason_phrase or f"HTTP {status}"
        title = ""
    fields: dict[str, Any] = {
        "status": status,
        "code": code,
        "errors": errors,
        "request_id": response.headers.get("X-Request-ID"),
        "title": title,
    }
    cls = error_class(status)
    if issubclass(cls, RateLimited | Unavailable):
        fields["retry_after"] = retry_after
    return cls(detail, **fields)


def retried(plan: Plan[T], settings: Settings) -> Generator[Step, Outcome, T]:
    """``plan`` with each of its calls attempted and repeated by the rules: the steps a
    client carries out are single attempts and pauses."""
    answer: Any = None
    failure: FlashqError | None = None
    while True:
        try:
            step = plan.send(answer) if failure is None else plan.throw(failure)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        failure = None
        if isinstance(step, Pause | Gather):
            answer = yield step
            continue
        try:
            answer = yield from _attempts(step, settings)
        except FlashqError as error:
            if not step.catch:
                raise
            failure = error


def _attempts(call: Call, settings: Settings) -> Generator[Step, Outcome, httpx.Response]:
    attempt = 0
    while True:
        outcome = yield call
        if isinstance(outcome, httpx.Response) and outcome.status_code < 400:
            return outcome
        delay, why = _next_try(call, outcome, attempt, settings)
        if delay is None:
            raise _failure(call, outcome, attempt, settings)
        logger.info(
            "%s %s: %s; retrying in %.2f s (%d of %d)",
            call.method,
            call.path,
            why,
            delay,
            attempt + 1,
            settings.max_retries,
        )
        yield Pause(delay, f"retry {call.method} {call.path} after {why}")
        attempt += 1


def _next_try(
    call: Call, outcome: Outcome, attempt: int, settings: Settings
) -> tuple[float | None, str]:
    """The delay before trying ``call`` again after ``outcome`` (None: raise now), and
    what went wrong, for the log."""
    if attempt >= settings.max_retries:
        return None, ""
    if not isinstance(outcome, httpx.Response):
        never_sent = isinstance(outcome, NEVER_SENT)
        if call.idempotent or never_sent:
            return backoff_delay(attempt), type(outcome).__name__
        return None, ""
    status = outcome.status_code
    pause = retry_after(outcome)
    retryable = status in RETRYABLE_STATUSES and (
        call.idempotent or (status in (429, 503) and pause is not None)
    )
    if not retryable or (pause is not None and pause > MAX_RETRY_AFTER_SECONDS):
        return None, ""
    return (backoff_delay(attempt) if pause is None else pause), f"answered {status}"


def _failure(call: Call, outcome: Outcome, attempt: int, settings: Settings) -> FlashqError:
    if isinstance(outcome, httpx.Response):
        return problem(outcome, retry_after(outcome))
    # Built from the text alone: the httpx error (which holds the request, headers and
    # all) is neither the cause nor the context of what is raised.
    failure = f"{type(outcome).__name__}: {outcome}" if str(outcome) else type(outcome).__name__
    return ConnectionFailed(
        f"{call.method} {settings.base_url}{call.path} failed after {attempt + 1} "
        f"attempt(s): {failure}",
        code="connection_failed",
    )
