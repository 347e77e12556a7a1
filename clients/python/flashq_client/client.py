"""A synchronous client of the flashQ REST API (``/api/v1``).

One ``Client`` keeps one ``httpx.Client`` (one connection pool, so connections are
reused) and may be shared by threads. Every method returns the API's JSON answer as a
plain dict (typed with the TypedDicts below) or raises a ``FlashqError`` subclass.

Retries (at most ``max_retries``, jittered exponential backoff from 0.2 s to 10 s, or
the server's ``Retry-After`` when it gives one):

- requests that are safe to repeat (GET, a job's wait included, PUT, DELETE, PATCH of
  a job, pause, resume, and every push and flow push, whose root always carries an
  idempotency key) on a connection failure of any kind and on 429, 502, 503 and 504;
- the others (pull, ack, fail, progress, release, snooze, cancel, promote, retry,
  retry_failed, clean, an executed erasure)
  only when the request cannot have been acted on: the connection was never made
  (``httpx.ConnectError``, ``ConnectTimeout``, ``PoolTimeout``), or the answer was 429
  or 503 with ``Retry-After`` (flashQ sends that only after rolling the request back).
"""

from __future__ import annotations

import email.utils
import logging
import math
import os
import random
import threading
import time
import urllib.parse
import uuid
from collections.abc import Generator, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, NotRequired, TypedDict, cast, overload

import httpx

from .errors import (
    ConnectionFailed,
    FieldProblem,
    FlashqError,
    RateLimited,
    Unavailable,
    error_class,
)

__version__ = "0.1.0"

logger = logging.getLogger("flashq_client")

#: Hosts a plain-http URL may name without ``allow_insecure_http``.
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
BACKOFF_BASE_SECONDS = 0.2
BACKOFF_CAP_SECONDS = 10.0
#: A ``Retry-After`` longer than this is not waited for: the error is raised at once.
MAX_RETRY_AFTER_SECONDS = 60.0
#: Seconds the read timeout of a long poll exceeds its ``wait``.
LONG_POLL_MARGIN_SECONDS = 15.0
#: The longest wait the server takes in one call (``GET /jobs/{id}/wait``); ``wait``
#: asks again for longer ones.
MAX_JOB_WAIT_MS = 30_000
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
#: Transport errors raised before any byte of the request was sent.
NEVER_SENT: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)

JobId = str | uuid.UUID


# -- shapes of answers ------------------------------------------------------------------


class Backoff(TypedDict, total=False):
    type: Literal["fixed", "exponential"]
    delay: int  # ms
    max: int  # ms, the cap
    jitter: float  # 0..1


class JobSummary(TypedDict):
    id: str
    queue: str
    state: str
    priority: int
    attempts: int
    max_attempts: int
    key: str | None
    group: str | None
    run_at: str
    created_at: str


class PushedJob(JobSummary):
    #: True when this call created the job (201); False when an unfinished job this
    #: token's family pushed already had the key (200).
    created: bool


class LeasedJob(TypedDict):
    id: str
    queue: str
    data: dict[str, Any]
    priority: int
    attempts: int
    max_attempts: int
    progress: int
    tags: list[str]
    group: str | None
    lease_id: str
    lease_expires_at: str
    #: The job's timeout (ms) and this attempt's deadline (the lease never outlives it).
    timeout: int | None
    deadline_at: str | None
    created_at: str


class Pulled(list[LeasedJob]):
    """What ``pull`` leased. ``retry_after`` is set when the server answered at once
    instead of waiting (its cap on waiting pulls was reached): the seconds to wait before
    pulling again, rather than calling back straight away."""

    def __init__(self, jobs: Sequence[LeasedJob], *, retry_after: float | None) -> None:
        super().__init__(jobs)
        self.retry_after = retry_after


class ErrorEntry(TypedDict):
    attempt: int
    #: "[MASKED]" unless the token has reveal on the queue ("" stays "").
    error: str
    code: str
    at: str


class Job(JobSummary):
    data: dict[str, Any]
    result: Any
    #: error and progress_message: "[MASKED]" unless the token has reveal on the queue.
    error: str
    error_code: str
    errors: list[ErrorEntry]
    backoff: Backoff
    progress: int
    progress_message: str
    subject: str | None
    tags: list[str]
    expires_at: str | None
    started_at: str | None
    finished_at: str | None
    lease_expires_at: str | None
    timeout: int | None
    deadline_at: str | None
    #: Only to the token family that holds the current lease.
    lease_id: NotRequired[str]
    #: getJob and wait: the flow job whose child this is (null outside a flow), and the
    #: ids it was pushed with in ``depends_on``.
    parent: NotRequired[str | None]
    depends_on: NotRequired[list[str]]


class WaitedJob(Job):
    """A job at the end of ``wait`` (or ``push(..., wait=True)``)."""

    #: True when it has finished (completed, failed, cancelled or expired); False when
    #: the timeout ran out first.
    finished: bool
    #: ``push(..., wait=True)`` only: whether the push created the job.
    created: NotRequired[bool]


class FlowNode(TypedDict):
    """A flow's answer: the tree of ids, queues and states, as pushed."""

    id: str
    queue: str
    state: str
    children: list[FlowNode]
    #: The root only: True when this call created the flow (201); False when an
    #: unfinished root of this token's family had the key (200, the existing tree).
    created: NotRequired[bool]


class AckItem(TypedDict):
    id: str
    lease_id: str
    result: NotRequired[Any]


class RateLimit(TypedDict):
    max: int
    duration_ms: int


class QueueInfo(TypedDict):
    name: str
    paused: bool
    rate_limit: RateLimit | None
    concurrency: int | None
    #: At most this many active jobs per group (``group`` on push); 1 by default.
    group_concurrency: int
    schema: dict[str, Any] | None
    created_at: str


class QueueStats(QueueInfo):
    counts: dict[str, int]
    oldest_waiting_age_seconds: float | None


class Permission(TypedDict):
    effect: Literal["allow", "deny"]
    pattern: str
    verbs: list[str]


class Me(TypedDict):
    name: str
    bootstrap: bool
    family: str
    created_at: str | None
    expires_at: str | None
    allowed_cidrs: list[str]
    permissions: list[Permission]


class CleanResult(TypedDict):
    deleted: dict[str, dict[str, int]]  # queue -> state -> jobs deleted
    total: int
    skipped: list[str]
    held: list[str]


class ErasureResult(TypedDict):
    executed: bool
    mode: str
    total: int
    counts: dict[str, dict[str, int]]
    redacted_fields: dict[str, list[str]]
    held: list[str]
    skipped: list[str]
    other_stores: str
    receipt_id: int | None


# -- the token ---------------------------------------------------------------------------


def _resolve_token(token: str | None) -> str:
    """The argument, else ``FLASHQ_TOKEN``, else the file ``FLASHQ_TOKEN_FILE`` names."""
    if not token:
        token = os.environ.get("FLASHQ_TOKEN") or None
    if not token:
        path = os.environ.get("FLASHQ_TOKEN_FILE")
        if path:
            try:
                token = Path(path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(f"FLASHQ_TOKEN_FILE cannot be read: {exc.strerror}") from None
    if not token:
        raise ValueError("no API token: pass token=, or set FLASHQ_TOKEN or FLASHQ_TOKEN_FILE")
    if not token.isascii() or not token.isprintable() or " " in token:
        # Said without the value: a header could not carry it anyway.
        raise ValueError("the API token has characters an HTTP header cannot carry")
    return token


class _BearerAuth(httpx.Auth):
    """Adds the bearer token to each request; its repr never shows it."""

    def __init__(self, token: str) -> None:
        self.__token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.__token}"
        yield request

    def __repr__(self) -> str:
        return "<bearer token>"


# -- helpers -----------------------------------------------------------------------------


def _segment(value: str | uuid.UUID, *, safe: str = "") -> str:
    return urllib.parse.quote(str(value), safe=safe)


def _queue(name: str) -> str:
    return _segment(name, safe=":")


def backoff_delay(attempt: int) -> float:
    """Seconds before retry ``attempt`` (0-based): exponential from 0.2 s, capped at
    10 s, with jitter (between half and all of it)."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2.0**attempt)
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not secrets


def _retry_after(response: httpx.Response) -> float | None:
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


def _problem(response: httpx.Response, retry_after: float | None) -> FlashqError:
    """The exception for an error answer (problem+json, or whatever a proxy sent)."""
    status = response.status_code
    request_id = response.headers.get("X-Request-ID")
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
    cls = error_class(status)
    if cls is RateLimited:
        return RateLimited(
            detail,
            retry_after=retry_after,
            status=status,
            code=code,
            errors=errors,
            request_id=request_id,
            title=title,
        )
    if cls is Unavailable:
        return Unavailable(
            detail,
            retry_after=retry_after,
            status=status,
            code=code,
            errors=errors,
            request_id=request_id,
            title=title,
        )
    return cls(detail, status=status, code=code, errors=errors, request_id=request_id, title=title)


def _ms_until(deadline: float) -> int:
    """Whole milliseconds from now to a ``time.monotonic()`` deadline, at least 0."""
    return max(0, math.ceil((deadline - time.monotonic()) * 1000))


def _ack_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """One ``{id, lease_id, result?}`` for a batch ack or a pull's ``ack``."""
    body: dict[str, Any] = {"id": str(item["id"]), "lease_id": str(item["lease_id"])}
    if "result" in item:
        body["result"] = item["result"]
    return body


def _api_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """A push body in the API's field names (``delay_ms`` and ``ttl_ms`` are taken for
    ``delay`` and ``ttl``), ``depends_on`` ids as text."""
    item = dict(job)
    for ours, theirs in (("delay_ms", "delay"), ("ttl_ms", "ttl")):
        if ours in item:
            if theirs in item:
                raise ValueError(f"a job gives both {ours} and {theirs}")
            item[theirs] = item.pop(ours)
    if item.get("depends_on") is not None:
        item["depends_on"] = [str(job_id) for job_id in item["depends_on"]]
    return item


def _batch_item(job: Mapping[str, Any]) -> dict[str, Any]:
    """One job of a batch push (``_api_job``), with an idempotency key."""
    item = _api_job(job)
    if item.get("key") is None:
        item["key"] = uuid.uuid4().hex
    return item


def _flow_child(child: Mapping[str, Any]) -> dict[str, Any]:
    """One child of a flow, its job and its own children in the API's field names."""
    node = dict(child)
    if "job" in node:
        node["job"] = _api_job(node["job"])
    if node.get("children") is not None:
        node["children"] = [_flow_child(grandchild) for grandchild in node["children"]]
    return node


# -- the client --------------------------------------------------------------------------


class Client:
    """flashQ's REST API over one reused HTTP connection pool.

    ``base_url`` is the server (``https://flashq.example.com``) or its API root (``.../api/v1``).
    The token comes from ``token``, else ``FLASHQ_TOKEN``, else the file named by
    ``FLASHQ_TOKEN_FILE``; it is never logged, shown in ``repr`` or put in an exception.
    Plain ``http://`` is refused except to localhost, unless ``allow_insecure_http``.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 40.0,
        max_retries: int = 4,
        allow_insecure_http: bool = False,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        try:
            url = httpx.URL(base_url)
        except httpx.InvalidURL as exc:
            raise ValueError(f"invalid base_url: {exc}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("base_url must be an http:// or https:// URL with a host")
        if url.scheme == "http" and url.host not in LOCAL_HOSTS and not allow_insecure_http:
            raise ValueError(
                f"refusing plain http:// to {url.host}: the token would cross the network "
                "unencrypted; use https://, or pass allow_insecure_http=True"
            )
        if url.username or url.password:
            raise ValueError("base_url must not carry credentials")
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        path = url.path.rstrip("/")
        if not path.endswith("/api/v1"):
            path += "/api/v1"
        self.base_url = str(url.copy_with(path=path + "/", query=None, fragment=None))
        self.timeout = timeout
        self.max_retries = max_retries
        self._http = httpx.Client(
            base_url=self.base_url,
            auth=_BearerAuth(_resolve_token(token)),
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
            # No HTTP_PROXY & co. from the environment: a proxy for plain http to
            # localhost would see the bearer token in clear.
            trust_env=False,
            headers={
                "User-Agent": f"flashq-client/{__version__}",
                "Accept": "application/json, application/problem+json",
            },
        )
        #: Set, it cuts short the pause between retries (a worker's SIGTERM).
        self._stop: threading.Event | None = None

    def __repr__(self) -> str:
        return f"Client(base_url={self.base_url!r})"

    # -- lifecycle

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- the one way out

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str | int] | None = None,
        idempotent: bool,
        read_timeout: float | None = None,
    ) -> httpx.Response:
        timeout = httpx.Timeout(self.timeout, read=read_timeout or self.timeout)
        attempt, delay = 0, 0.0
        while True:
            if attempt:  # a retry's pause, out of any except block (see failure)
                self._sleep(delay)
            failure: str | None = None
            response: httpx.Response | None = None
            try:
                response = self._http.request(
                    method, path, json=body, params=params, timeout=timeout
                )
            except httpx.TransportError as exc:
                sent = not isinstance(exc, NEVER_SENT)
                if attempt < self.max_retries and (idempotent or not sent):
                    delay = backoff_delay(attempt)
                    logger.info(
                        "%s %s: %s; retrying in %.2f s (%d of %d)",
                        method,
                        path,
                        type(exc).__name__,
                        delay,
                        attempt + 1,
                        self.max_retries,
                    )
                    attempt += 1
                    continue
                # Built outside the except block: the httpx error (which holds the
                # request, headers and all) is neither the cause nor the context.
                failure = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if response is None:
                raise ConnectionFailed(
                    f"{method} {self.base_url}{path} failed after {attempt + 1} "
                    f"attempt(s): {failure}",
                    code="connection_failed",
                )
            status = response.status_code
            if status < 400:
                return response
            retry_after = _retry_after(response)
            retryable = status in RETRYABLE_STATUSES and (
                idempotent or (status in (429, 503) and retry_after is not None)
            )
            if (
                retryable
                and attempt < self.max_retries
                and (retry_after is None or retry_after <= MAX_RETRY_AFTER_SECONDS)
            ):
                delay = retry_after if retry_after is not None else backoff_delay(attempt)
                logger.info(
                    "%s %s answered %d; retrying in %.2f s (%d of %d)",
                    method,
                    path,
                    status,
                    delay,
                    attempt + 1,
                    self.max_retries,
                )
                attempt += 1
                continue
            raise _problem(response, retry_after)

    def _sleep(self, delay: float) -> None:
        """The pause before a retry; ``_stop`` set ends it with the request failed."""
        if self._stop is None:
            time.sleep(delay)
        elif self._stop.wait(delay):
            raise ConnectionFailed("interrupted: the client is stopping", code="interrupted")

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    # -- producing

    @overload
    def push(
        self,
        queue: str,
        data: Mapping[str, Any],
        *,
        priority: int | None = None,
        delay_ms: int | None = None,
        max_attempts: int | None = None,
        backoff: Backoff | Mapping[str, Any] | None = None,
        ttl_ms: int | None = None,
        key: str | None = None,
        subject: str | None = None,
        tags: Sequence[str] | None = None,
        timeout_ms: int | None = None,
        group: str | None = None,
        depends_on: Sequence[JobId] | None = None,
        wait: Literal[False] = False,
        wait_timeout_ms: int | None = None,
    ) -> PushedJob: ...

    @overload
    def push(
        self,
        queue: str,
        data: Mapping[str, Any],
        *,
        priority: int | None = None,
        delay_ms: int | None = None,
        max_attempts: int | None = None,
        backoff: Backoff | Mapping[str, Any] | None = None,
        ttl_ms: int | None = None,
        key: str | None = None,
        subject: str | None = None,
        tags: Sequence[str] | None = None,
        timeout_ms: int | None = None,
        group: str | None = None,
        depends_on: Sequence[JobId] | None = None,
        wait: Literal[True],
        wait_timeout_ms: int | None = None,
    ) -> WaitedJob: ...

    def push(
        self,
        queue: str,
        data: Mapping[str, Any],
        *,
        priority: int | None = None,
        delay_ms: int | None = None,
        max_attempts: int | None = None,
        backoff: Backoff | Mapping[str, Any] | None = None,
        ttl_ms: int | None = None,
        key: str | None = None,
        subject: str | None = None,
        tags: Sequence[str] | None = None,
        timeout_ms: int | None = None,
        group: str | None = None,
        depends_on: Sequence[JobId] | None = None,
        wait: bool = False,
        wait_timeout_ms: int | None = None,
    ) -> PushedJob | WaitedJob:
        """Push one job. Without ``key`` the client makes one (a uuid4), so a retry finds
        the job its first attempt made while that job is unfinished (the server matches
        keys against unfinished jobs only: one that finished before the retry landed is
        not found, and the retry makes a second). ``created`` is false when the server
        answered with an existing job, the first attempt's included. ``timeout_ms``: the
        processing deadline from each claim (past it the attempt fails with code
        ``timeout``); ``group``: at most the queue's group concurrency of the group's jobs
        run at once; ``depends_on``: up to 100 ids of jobs (the token needs ``getJob`` on
        their queues) that must complete before this one runs.

        With ``wait`` the call then waits for the job to finish (``wait``, up to
        ``wait_timeout_ms``; None: until it finishes) and returns it as ``wait`` does,
        with ``created`` too."""
        body: dict[str, Any] = {"data": dict(data), "key": key or uuid.uuid4().hex}
        options: dict[str, Any] = {
            "priority": priority,
            "delay": delay_ms,
            "max_attempts": max_attempts,
            "backoff": None if backoff is None else dict(backoff),
            "ttl": ttl_ms,
            "subject": subject,
            "tags": None if tags is None else list(tags),
            "timeout": timeout_ms,
            "group": group,
            "depends_on": None if depends_on is None else [str(each) for each in depends_on],
        }
        body.update({name: value for name, value in options.items() if value is not None})
        response = self._request("POST", f"queues/{_queue(queue)}/jobs", body=body, idempotent=True)
        job = cast(PushedJob, response.json())
        job["created"] = response.status_code == 201
        if not wait:
            return job
        waited = self.wait(job["id"], timeout_ms=wait_timeout_ms)
        waited["created"] = job["created"]
        return waited

    def push_batch(self, queue: str, jobs: Sequence[Mapping[str, Any]]) -> list[PushedJob]:
        """Push up to 1000 jobs, all or nothing; the answer lists them in input order.
        Each job is a push body in the API's field names (``data``, ``priority``,
        ``delay``, ``max_attempts``, ``backoff``, ``ttl``, ``key``, ``subject``, ``tags``,
        ``timeout``, ``group``, ``depends_on``);
        one without a ``key`` gets its own."""
        if not jobs:
            return []
        body = {"jobs": [_batch_item(job) for job in jobs]}
        answer = self._json(
            "POST", f"queues/{_queue(queue)}/jobs/batch", body=body, idempotent=True
        )
        return cast(list[PushedJob], answer["jobs"])

    def push_flow(
        self,
        queue: str,
        job: Mapping[str, Any],
        children: Sequence[Mapping[str, Any]],
        *,
        on_child_failure: Literal["fail", "ignore", "continue"] = "fail",
    ) -> FlowNode:
        """Push a flow in one transaction: ``job`` (a push body in the API's names, as
        ``push_batch`` takes) in ``queue``, run once its ``children`` have finished, each
        ``{"queue", "job", "children"?, "on_child_failure"?}`` in its own queue, up to 10
        levels and 1,000 jobs. ``on_child_failure`` says what a parent does when a child
        fails for good: ``fail`` (it fails with code ``child_failed`` and its unfinished
        children are cancelled), ``ignore`` or ``continue`` (it runs when the rest have
        finished); a node may set its own. Only the root may have a ``key``: without one
        the client makes one, so a retry returns the tree its first attempt made while
        the root is unfinished. The answer is the tree of ids and states, ``created`` on
        the root (false: an unfinished root of this token's family had the key)."""
        root = _api_job(job)
        if root.get("key") is None:
            root["key"] = uuid.uuid4().hex
        body = {
            "job": root,
            "children": [_flow_child(child) for child in children],
            "on_child_failure": on_child_failure,
        }
        response = self._request(
            "POST", f"queues/{_queue(queue)}/flows", body=body, idempotent=True
        )
        tree = cast(FlowNode, response.json())
        tree["created"] = response.status_code == 201
        return tree

    def children(self, job_id: JobId) -> list[Job]:
        """A flow job's children, in the order pushed, each as ``get_job`` shows it
        (state, ``result``, ``error_code``): only those in queues where the token has
        ``getJob``. A job outside a flow has none."""
        answer = self._json("GET", f"jobs/{_segment(job_id)}/children", idempotent=True)
        return cast(list[Job], answer["children"])

    def wait(self, job_id: JobId, *, timeout_ms: int | None = None) -> WaitedJob:
        """Wait for a job to finish (completed, failed, cancelled or expired) and return
        it as ``get_job`` shows it, with ``finished``: True, or False when ``timeout_ms``
        ran out first (None: wait until it finishes). The server waits at most 30 s per
        call, so a longer wait asks again; a server that holds too many waits answers at
        once with ``Retry-After``, and the client pauses that long before asking again.
        Safe to repeat, and retried as such."""
        if timeout_ms is not None and timeout_ms < 0:
            raise ValueError("timeout_ms cannot be negative")
        deadline = None if timeout_ms is None else time.monotonic() + timeout_ms / 1000
        while True:
            left = MAX_JOB_WAIT_MS if deadline is None else _ms_until(deadline)
            chunk = min(left, MAX_JOB_WAIT_MS)
            response = self._request(
                "GET",
                f"jobs/{_segment(job_id)}/wait",
                params={"timeout_ms": chunk},
                idempotent=True,
                read_timeout=max(self.timeout, chunk / 1000 + LONG_POLL_MARGIN_SECONDS),
            )
            job = cast(WaitedJob, response.json())
            if job["finished"] or (deadline is not None and _ms_until(deadline) <= 0):
                return job
            pause = _retry_after(response)
            if pause:
                time.sleep(pause if deadline is None else min(pause, _ms_until(deadline) / 1000))

    # -- working

    def pull(
        self,
        queue: str,
        *,
        count: int = 1,
        lease: int = 30,
        wait: float = 0.0,
        ack: Sequence[Mapping[str, Any]] | None = None,
    ) -> Pulled:
        """Lease up to ``count`` jobs for ``lease`` seconds, waiting up to ``wait``
        seconds for some. ``ack`` (``{id, lease_id, result?}`` items of this queue)
        completes the previous batch in the same call; a stale one is a ``Conflict``
        naming ``/ack/<i>/lease_id``, and then nothing is acked or leased."""
        body: dict[str, Any] = {"count": count, "lease": lease, "wait": wait}
        if ack:
            body["ack"] = [_ack_item(item) for item in ack]
        response = self._request(
            "POST",
            f"queues/{_queue(queue)}/pull",
            body=body,
            idempotent=False,
            read_timeout=max(self.timeout, wait + LONG_POLL_MARGIN_SECONDS),
        )
        return Pulled(response.json()["jobs"], retry_after=_retry_after(response))

    def ack(self, job_id: JobId, lease_id: str, result: Any = None) -> Job:
        body = {"lease_id": str(lease_id), "result": result}
        return cast(
            Job,
            self._json("POST", f"jobs/{_segment(job_id)}/ack", body=body, idempotent=False),
        )

    def ack_batch(self, acks: Sequence[Mapping[str, Any]]) -> int:
        """Complete up to 1000 jobs, all or nothing; how many were completed."""
        if not acks:
            return 0
        body = {"jobs": [_ack_item(item) for item in acks]}
        answer = self._json("POST", "jobs/ack", body=body, idempotent=False)
        return int(answer["acked"])

    def fail(
        self,
        job_id: JobId,
        lease_id: str,
        error: str,
        *,
        code: str | None = None,
        retry: bool = True,
        delay_ms: int | None = None,
    ) -> Job:
        """Record a failed attempt: back to waiting after the job's backoff (or
        ``delay_ms``: 0 gives it back at once), or failed when its attempts are used up or
        ``retry`` is False. ``code`` (1 to 64 letters, digits, ``.``, ``_`` or ``-``, such
        as an exception's class name) is shown to every reader of the job; ``error`` only
        to tokens with ``reveal`` on its queue."""
        body: dict[str, Any] = {"lease_id": str(lease_id), "error": error, "retry": retry}
        if code is not None:
            body["code"] = code
        if delay_ms is not None:
            body["delay"] = delay_ms
        return cast(
            Job,
            self._json("POST", f"jobs/{_segment(job_id)}/fail", body=body, idempotent=False),
        )

    def progress(self, job_id: JobId, lease_id: str, progress: int, message: str = "") -> Job:
        """Report progress (0-100); also extends the lease by its length, never past the
        job's deadline (its timeout): from then on a ``Conflict``."""
        body = {"lease_id": str(lease_id), "progress": progress, "message": message}
        return cast(
            Job,
            # Absolute values and a lease extension: safe to repeat.
            self._json("POST", f"jobs/{_segment(job_id)}/progress", body=body, idempotent=True),
        )

    # -- jobs

    def get_job(self, job_id: JobId) -> Job:
        return cast(Job, self._json("GET", f"jobs/{_segment(job_id)}", idempotent=True))

    def get_jobs(
        self, queue: str, *, state: str | None = None, page_size: int = 100
    ) -> Iterator[Job]:
        """Every job of the queue (in ``state``, if given), oldest first, a page of
        ``page_size`` (at most 500) at a time."""
        cursor: str | None = None
        while True:
            params: dict[str, str | int] = {"limit": page_size}
            if state is not None:
                params["state"] = state
            if cursor is not None:
                params["cursor"] = cursor
            page = self._json("GET", f"queues/{_queue(queue)}/jobs", params=params, idempotent=True)
            yield from cast(list[Job], page["jobs"])
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def cancel(self, job_id: JobId) -> Job:
        """Cancel a waiting or active job (409 ``state_conflict`` otherwise)."""
        return cast(Job, self._json("POST", f"jobs/{_segment(job_id)}/cancel", idempotent=False))

    def update(
        self,
        job_id: JobId,
        data: Mapping[str, Any] | None = None,
        *,
        priority: int | None = None,
        run_at: datetime | str | None = None,
    ) -> Job:
        """Change a waiting or delayed job (409 otherwise): its ``priority``, its
        ``run_at`` (an aware datetime or ISO 8601 text; a past time makes it ready now),
        and its ``data`` if it has not started. At least one of the three."""
        body: dict[str, Any] = {}
        if data is not None:
            body["data"] = dict(data)
        if priority is not None:
            body["priority"] = priority
        if run_at is not None:
            body["run_at"] = run_at.isoformat() if isinstance(run_at, datetime) else run_at
        if not body:
            raise ValueError("give at least one of data, priority and run_at")
        return cast(
            Job,
            # Absolute values: safe to repeat.
            self._json("PATCH", f"jobs/{_segment(job_id)}", body=body, idempotent=True),
        )

    def release(self, job_id: JobId, lease_id: str) -> Job:
        """Give a job you hold back at once, the attempt not counted (a worker shutting
        down); a stale lease is a ``Conflict``."""
        body = {"lease_id": str(lease_id)}
        return cast(
            Job,
            self._json("POST", f"jobs/{_segment(job_id)}/release", body=body, idempotent=False),
        )

    def snooze(self, job_id: JobId, lease_id: str, delay_ms: int) -> Job:
        """Give a job you hold back to run again after ``delay_ms``, the attempt not
        counted; a stale lease is a ``Conflict``."""
        body = {"lease_id": str(lease_id), "delay_ms": delay_ms}
        return cast(
            Job,
            self._json("POST", f"jobs/{_segment(job_id)}/snooze", body=body, idempotent=False),
        )

    def promote(self, job_id: JobId, reason: str | None = None) -> Job:
        """Run a delayed job now (a ``Conflict`` if it is not delayed)."""
        body = {"reason": reason} if reason else {}
        return cast(
            Job,
            self._json("POST", f"jobs/{_segment(job_id)}/promote", body=body, idempotent=False),
        )

    def retry_failed(
        self,
        queue: str,
        *,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        limit: int = 1000,
    ) -> int:
        """Send up to ``limit`` failed jobs of ``queue`` that failed in [``since``,
        ``until``) back to waiting, oldest first, in one call; how many."""
        body: dict[str, Any] = {"limit": limit}
        for name, moment in (("since", since), ("until", until)):
            if moment is not None:
                body[name] = moment.isoformat() if isinstance(moment, datetime) else moment
        answer = self._json(
            "POST", f"queues/{_queue(queue)}/retry-failed", body=body, idempotent=False
        )
        return int(answer["retried"])

    def retry(self, job_id: JobId) -> Job:
        """Send a failed, cancelled or expired job back to waiting."""
        return cast(Job, self._json("POST", f"jobs/{_segment(job_id)}/retry", idempotent=False))

    def clean(
        self, pattern: str, grace_ms: int, state: str = "completed", *, limit: int = 1000
    ) -> CleanResult:
        """Delete jobs in ``state`` (completed, failed, cancelled or expired) that
        finished at least ``grace_ms`` ago, at most ``limit``, on every queue ``pattern``
        (a name, or ``*`` wildcards) reaches: ``clean("*", 30 * 86_400_000, "completed")``."""
        body = {"grace_ms": grace_ms, "state": state, "limit": limit}
        return cast(
            CleanResult,
            self._json(
                "POST", f"queues/{_segment(pattern, safe=':*')}/clean", body=body, idempotent=False
            ),
        )

    # -- queues

    def list_queues(self) -> list[QueueInfo]:
        return cast(list[QueueInfo], self._json("GET", "queues", idempotent=True)["queues"])

    def stats(self, queue: str) -> QueueStats:
        return cast(QueueStats, self._json("GET", f"queues/{_queue(queue)}", idempotent=True))

    def pause(self, queue: str) -> QueueInfo:
        return cast(QueueInfo, self._json("POST", f"queues/{_queue(queue)}/pause", idempotent=True))

    def resume(self, queue: str) -> QueueInfo:
        return cast(
            QueueInfo, self._json("POST", f"queues/{_queue(queue)}/resume", idempotent=True)
        )

    def set_rate_limit(self, queue: str, max: int, duration_ms: int) -> QueueInfo:
        body = {"max": max, "duration_ms": duration_ms}
        return cast(
            QueueInfo,
            self._json("PUT", f"queues/{_queue(queue)}/rate-limit", body=body, idempotent=True),
        )

    def remove_rate_limit(self, queue: str) -> QueueInfo:
        return cast(
            QueueInfo,
            self._json("DELETE", f"queues/{_queue(queue)}/rate-limit", idempotent=True),
        )

    def set_concurrency(self, queue: str, max: int) -> QueueInfo:
        return cast(
            QueueInfo,
            self._json(
                "PUT", f"queues/{_queue(queue)}/concurrency", body={"max": max}, idempotent=True
            ),
        )

    def remove_concurrency(self, queue: str) -> QueueInfo:
        return cast(
            QueueInfo,
            self._json("DELETE", f"queues/{_queue(queue)}/concurrency", idempotent=True),
        )

    def set_group_concurrency(self, queue: str, max: int) -> QueueInfo:
        """At most ``max`` active jobs per group (``group`` on push) in the queue."""
        return cast(
            QueueInfo,
            self._json(
                "PUT",
                f"queues/{_queue(queue)}/group-concurrency",
                body={"max": max},
                idempotent=True,
            ),
        )

    def remove_group_concurrency(self, queue: str) -> QueueInfo:
        """Back to one active job per group."""
        return cast(
            QueueInfo,
            self._json("DELETE", f"queues/{_queue(queue)}/group-concurrency", idempotent=True),
        )

    def set_schema(self, queue: str, schema: Mapping[str, Any]) -> QueueInfo:
        """Every job's data must then match this JSON Schema (2020-12)."""
        return cast(
            QueueInfo,
            self._json(
                "PUT",
                f"queues/{_queue(queue)}/schema",
                body={"schema": dict(schema)},
                idempotent=True,
            ),
        )

    def remove_schema(self, queue: str) -> QueueInfo:
        return cast(
            QueueInfo, self._json("DELETE", f"queues/{_queue(queue)}/schema", idempotent=True)
        )

    # -- the token, compliance

    def me(self) -> Me:
        return cast(Me, self._json("GET", "me", idempotent=True))

    def erase(
        self,
        subject: str,
        *,
        mode: Literal["redact", "delete"] = "redact",
        reason: str = "",
        execute: bool = False,
    ) -> ErasureResult:
        """GDPR erasure of a data subject's jobs (a dry run unless ``execute``) in the
        queues where the token has the verb ``erase`` (never implied by ``*``); the
        queues it sees but may not erase come back under ``skipped``."""
        body = {"subject": subject, "mode": mode, "reason": reason, "execute": execute}
        return cast(
            ErasureResult,
            self._json("POST", "compliance/erasures", body=body, idempotent=not execute),
        )

    # -- schedules

    @staticmethod
    def _schedule_path(queue: str, name: str) -> str:
        return f"queues/{_queue(queue)}/schedules/{_queue(name)}"

    def put_schedule(
        self,
        queue: str,
        name: str,
        *,
        cron: str | None = None,
        every_ms: int | None = None,
        timezone: str = "UTC",
        data: Mapping[str, Any],
        priority: int | None = None,
        max_attempts: int | None = None,
        backoff: Backoff | Mapping[str, Any] | None = None,
        timeout_ms: int | None = None,
        tags: Sequence[str] | None = None,
        subject: str | None = None,
        start_at: datetime | str | None = None,
        end_at: datetime | str | None = None,
        catch_up: Literal["none", "latest", "all"] | None = None,
        max_catch_up: int | None = None,
    ) -> dict[str, Any]:
        """Create or replace the schedule ``name`` of a queue: ``cron`` (5 fields, or 6
        with seconds first, read in ``timezone``) or ``every_ms``, and the template of
        the job each tick pushes (``timeout_ms``, as push's). Datetimes need an offset. The
        answer is the schedule with its ``next_run_at``; a replace never fires a tick
        already fired, so repeating the call is safe."""
        body: dict[str, Any] = {"timezone": timezone, "data": dict(data)}
        options: dict[str, Any] = {
            "cron": cron,
            "every_ms": every_ms,
            "priority": priority,
            "max_attempts": max_attempts,
            "backoff": None if backoff is None else dict(backoff),
            "timeout": timeout_ms,
            "tags": None if tags is None else list(tags),
            "subject": subject,
            "start_at": start_at.isoformat() if isinstance(start_at, datetime) else start_at,
            "end_at": end_at.isoformat() if isinstance(end_at, datetime) else end_at,
            "catch_up": catch_up,
            "max_catch_up": max_catch_up,
        }
        body.update({key: value for key, value in options.items() if value is not None})
        return cast(
            dict[str, Any],
            self._json("PUT", self._schedule_path(queue, name), body=body, idempotent=True),
        )

    def get_schedule(self, queue: str, name: str) -> dict[str, Any]:
        return cast(
            dict[str, Any], self._json("GET", self._schedule_path(queue, name), idempotent=True)
        )

    def list_schedules(self, queue: str) -> list[dict[str, Any]]:
        """The queue's schedules by name (none for a queue not yet made)."""
        answer = self._json("GET", f"queues/{_queue(queue)}/schedules", idempotent=True)
        return cast(list[dict[str, Any]], answer["schedules"])

    def delete_schedule(self, queue: str, name: str, *, reason: str = "") -> None:
        """Delete a schedule (the jobs it pushed stay); ``reason`` goes to the audit."""
        body = {"reason": reason} if reason else {}
        self._request("DELETE", self._schedule_path(queue, name), body=body, idempotent=True)

    def pause_schedule(self, queue: str, name: str, *, reason: str = "") -> dict[str, Any]:
        body = {"reason": reason} if reason else {}
        path = f"{self._schedule_path(queue, name)}/pause"
        return cast(dict[str, Any], self._json("POST", path, body=body, idempotent=True))

    def resume_schedule(self, queue: str, name: str, *, reason: str = "") -> dict[str, Any]:
        """Fire again from the first tick after now (ticks missed while paused are not)."""
        body = {"reason": reason} if reason else {}
        path = f"{self._schedule_path(queue, name)}/resume"
        return cast(dict[str, Any], self._json("POST", path, body=body, idempotent=True))

    def trigger_schedule(self, queue: str, name: str, *, reason: str = "") -> JobSummary:
        """Push one job from the template now, paused or not; not retried once sent (a
        repeat would push a second job)."""
        body = {"reason": reason} if reason else {}
        path = f"{self._schedule_path(queue, name)}/trigger"
        return cast(JobSummary, self._json("POST", path, body=body, idempotent=False))
