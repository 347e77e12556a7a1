"""A synchronous client of the flashQ REST API (``/api/v1``).

One ``Client`` keeps one ``httpx.Client`` (one connection pool, so connections are
reused) and may be shared by threads. Every method returns the API's JSON answer as a
plain dict (typed with the TypedDicts of ``shapes``) or raises a ``FlashqError``
subclass. What each method sends, and whether and when it is retried, is written once
for this client and ``AsyncClient`` (``calls`` and ``_policy``); this module carries it
out with blocking I/O.

A retry's pause can be cut short: ``Client(stop=event)`` (a ``threading.Event``) or
``client.interrupt()``. While the event is set, a pause before a retry (and a ``wait``'s
pause on ``Retry-After``) ends at once and the call raises ``Interrupted``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

import httpx

from ._policy import (
    BACKOFF_BASE_SECONDS,
    BACKOFF_CAP_SECONDS,
    MAX_RETRY_AFTER_SECONDS,
    RETRYABLE_STATUSES,
    Gather,
    Outcome,
    Pause,
    Plan,
    backoff_delay,
    retried,
)
from ._producer import Producer
from ._settings import LOCAL_HOSTS, Settings, __version__
from .calls import Calls, as_method
from .calls.gathering import Outcome as PushOutcome
from .calls.jobs import GET_JOBS_DOC
from .calls.producing import MAX_JOB_WAIT_MS
from .fields import FieldKeys
from .shapes import (
    AckItem,
    Backoff,
    CleanResult,
    ErasureResult,
    ErrorEntry,
    FlowNode,
    Job,
    JobId,
    JobSummary,
    LeasedJob,
    Me,
    Permission,
    Pulled,
    PushedJob,
    QueueInfo,
    QueueStats,
    RateLimit,
    WaitedJob,
)

P = ParamSpec("P")
T = TypeVar("T")


def _blocking(
    plan: Callable[Concatenate[Calls, P], Plan[T]],
) -> Callable[Concatenate[Client, P], T]:
    """``Client``'s method that carries ``plan`` out: same arguments, its result."""

    def method(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._run(plan(self._calls, *args, **kwargs))

    as_method(method, plan, "Client")
    return method


class Client:
    """flashQ's REST API over one reused HTTP connection pool.

    Args:
        base_url: the server (``https://flashq.example.com``) or its API root
            (``.../api/v1``). Plain ``http://`` is refused except to localhost, unless
            ``allow_insecure_http``.
        token: the API token; else ``FLASHQ_TOKEN``, else the file named by
            ``FLASHQ_TOKEN_FILE``. It is never logged, shown in ``repr`` or put in an
            exception.
        timeout: seconds for connecting, sending and reading (a long poll's read gets
            its wait on top).
        max_retries: retries of a call (see each method's "Retried").
        allow_insecure_http: allow plain ``http://`` to any host.
        transport: an ``httpx.BaseTransport`` instead of the network (tests).
        stop: a ``threading.Event``: while it is set, pauses before retries end at once
            and the call raises ``Interrupted`` (a worker's shutdown sets it).
        field_keys: the ``FieldKeys`` that seal and open encrypted fields (default:
            ``FieldKeys.from_env()`` when ``FLASHQ_FIELD_KEYS`` or its file is set).
        encrypt_fields: dotted paths of the data sealed on every push
            ("End-to-end encrypted fields" in the README).
        producer: producer mode: concurrent ``push`` calls to one queue are gathered
            and sent as one batch request ("Producer mode" in the README); each still
            returns its own job, or raises its own error, once its batch is committed.
        linger_ms: in producer mode, how long a batch waits for more pushes after its
            first (0 to 1000).
        max_batch: in producer mode, the most pushes in one batch (1 to 1000): a full
            batch goes at once.
        max_in_flight: in producer mode, the most batch requests in flight at once (1
            to 32), each from a sender thread of the client's own.
        max_pending: in producer mode, the most pushes gathering or in flight: beyond
            it ``submit`` and ``push`` block until one is answered.

    Raises:
        ValueError: a bad ``base_url``, ``max_retries``, field path, ``linger_ms``,
            ``max_batch``, ``max_in_flight`` or ``max_pending``, or no usable token.
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
        stop: threading.Event | None = None,
        field_keys: FieldKeys | None = None,
        encrypt_fields: Sequence[str] = (),
        producer: bool = False,
        linger_ms: float = 2.0,
        max_batch: int = 500,
        max_in_flight: int = 4,
        max_pending: int = 10_000,
    ) -> None:
        self._settings = Settings.build(
            base_url,
            token,
            timeout=timeout,
            max_retries=max_retries,
            allow_insecure_http=allow_insecure_http,
            field_keys=field_keys,
            encrypt_fields=encrypt_fields,
            producer=producer,
            linger_ms=linger_ms,
            max_batch=max_batch,
            max_in_flight=max_in_flight,
            max_pending=max_pending,
        )
        self.base_url = self._settings.base_url
        self.timeout = timeout
        self.max_retries = max_retries
        #: The keys that seal and open fields, and the paths sealed on push.
        self.field_keys = self._settings.field_keys
        self.encrypt_fields = self._settings.encrypt_fields
        self.stop = stop or threading.Event()
        self._calls = Calls(self._settings)
        self._http = httpx.Client(transport=transport, **self._settings.http_options())
        self._producer = Producer(self._settings, self._send_batch) if producer else None

    def __repr__(self) -> str:
        return f"Client(base_url={self.base_url!r})"

    # -- lifecycle

    def flush(self) -> None:
        """In producer mode, send the pushes now gathering without waiting out
        ``linger_ms``, and return once every batch gathered or in flight is answered
        (each push returns or raises where it was called). Without it, does nothing."""
        if self._producer is not None:
            self._producer.flush()

    def close(self) -> None:
        """Close the connection pool. In producer mode, first refuse new pushes
        (``RuntimeError``) and ``flush``: every push already made gets its answer (its
        future resolves), then the sender threads end."""
        if self._producer is not None:
            self._producer.close()
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

    def interrupt(self) -> None:
        """Set ``stop``: pauses before retries, now and until it is cleared, end at once
        and their calls raise ``Interrupted``. Safe from any thread; not from a signal
        handler (setting an Event there can deadlock: hand the signal to a thread)."""
        self.stop.set()

    # -- carrying plans out

    def _run(self, plan: Plan[T]) -> T:
        steps = retried(plan, self._settings)
        outcome: Outcome = None
        while True:
            try:
                step = steps.send(outcome)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            if isinstance(step, Pause):
                self._pause(step)
                outcome = None
                continue
            if isinstance(step, Gather):
                outcome = self._gathered(step).result()
                continue
            try:
                outcome = self._http.request(
                    step.method,
                    step.path,
                    json=step.body,
                    params=step.params,
                    timeout=step.timeout(self._settings.timeout),
                )
            except httpx.TransportError as exc:
                outcome = exc

    def _gathered(self, step: Gather) -> Future[PushedJob]:
        assert self._producer is not None
        if self._producer.in_sender():
            raise RuntimeError("push from a push future's callback would wait for itself")
        return self._producer.submit(step.path, step.body)

    def _send_batch(self, path: str, bodies: list[dict[str, Any]]) -> list[PushOutcome]:
        return self._run(self._calls.push_gathered(path, bodies))

    def _pause(self, pause: Pause) -> None:
        if self.stop.wait(pause.seconds):
            raise pause.interrupted()

    # -- the API (each method is written once, in ``calls``)

    push = _blocking(Calls.push)
    push_batch = _blocking(Calls.push_batch)
    push_flow = _blocking(Calls.push_flow)
    children = _blocking(Calls.children)
    wait = _blocking(Calls.wait)
    pull = _blocking(Calls.pull)
    ack = _blocking(Calls.ack)
    ack_batch = _blocking(Calls.ack_batch)
    fail = _blocking(Calls.fail)
    progress = _blocking(Calls.progress)
    release = _blocking(Calls.release)
    snooze = _blocking(Calls.snooze)
    get_job = _blocking(Calls.get_job)
    cancel = _blocking(Calls.cancel)
    update = _blocking(Calls.update)
    promote = _blocking(Calls.promote)
    retry = _blocking(Calls.retry)
    retry_failed = _blocking(Calls.retry_failed)
    clean = _blocking(Calls.clean)
    list_queues = _blocking(Calls.list_queues)
    stats = _blocking(Calls.stats)
    pause = _blocking(Calls.pause)
    resume = _blocking(Calls.resume)
    set_rate_limit = _blocking(Calls.set_rate_limit)
    remove_rate_limit = _blocking(Calls.remove_rate_limit)
    set_concurrency = _blocking(Calls.set_concurrency)
    remove_concurrency = _blocking(Calls.remove_concurrency)
    set_group_concurrency = _blocking(Calls.set_group_concurrency)
    remove_group_concurrency = _blocking(Calls.remove_group_concurrency)
    set_schema = _blocking(Calls.set_schema)
    remove_schema = _blocking(Calls.remove_schema)
    me = _blocking(Calls.me)
    erase = _blocking(Calls.erase)
    put_schedule = _blocking(Calls.put_schedule)
    get_schedule = _blocking(Calls.get_schedule)
    list_schedules = _blocking(Calls.list_schedules)
    delete_schedule = _blocking(Calls.delete_schedule)
    pause_schedule = _blocking(Calls.pause_schedule)
    resume_schedule = _blocking(Calls.resume_schedule)
    trigger_schedule = _blocking(Calls.trigger_schedule)

    def submit(
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
    ) -> Future[PushedJob]:
        """Push one job to ``queue`` without waiting for it (producer mode only).

        Returns a ``concurrent.futures.Future`` at once, as a Kafka producer's ``send``
        does; the client's sender threads send the push with the others to ``queue``
        ("Producer mode" in the README). The future resolves only once its batch is
        committed, with what ``push`` returns, or fails with the exception ``push``
        raises for this job alone. ``push`` is ``submit(...).result()``, with ``wait``
        on top (not taken here: waiting for a job to finish is a long poll of its own).
        The future cannot be cancelled: a push handed over is sent. Its callbacks run
        in a sender thread: keep them short, and call no ``push``, ``flush`` or
        ``close`` there. Blocks while ``max_pending`` pushes are pending.

        Args:
            queue: the queue's name, as ``push``.
            data: the job's payload, as ``push``.
            priority: as ``push``.
            delay_ms: as ``push``.
            max_attempts: as ``push``.
            backoff: as ``push``.
            ttl_ms: as ``push``.
            key: as ``push``; without it the client makes one.
            subject: as ``push``.
            tags: as ``push``.
            timeout_ms: as ``push``.
            group: as ``push``.
            depends_on: as ``push``.

        Returns:
            The future of the job (``PushedJob``, with ``created``); of ``push``'s
            exception for this job, a ``FlashqError``, when it is refused or unanswered
            (``Interrupted`` with code ``not_sent`` or ``unanswered`` when the client
            was closed, or the process ended, before its batch was answered).

        Raises:
            RuntimeError: the client is not in producer mode, or is closed.

        Retried:
            yes, as ``push``: its batch is retried, and each push's idempotency key
            finds what a first attempt stored."""
        # Every argument, by name, as push takes it (a test pins the two signatures).
        options = {name: value for name, value in locals().items() if name != "self"}
        if self._producer is None:
            raise RuntimeError("submit needs a producer: Client(..., producer=True)")
        plan = self._calls.push(**options)
        try:
            step = next(plan)  # the push's body, sealed and keyed, as push sends it
        except Exception as error:  # push() raises it: its future holds it
            failed: Future[PushedJob] = Future()
            failed.set_exception(error)
            return failed
        plan.close()
        assert isinstance(step, Gather)
        return self._gathered(step)

    def get_jobs(
        self, queue: str, *, state: str | None = None, page_size: int = 100
    ) -> Iterator[Job]:
        cursor: str | None = None
        while True:
            jobs, cursor = self._run(
                self._calls.jobs_page(queue, state=state, page_size=page_size, cursor=cursor)
            )
            yield from jobs
            if cursor is None:
                return

    get_jobs.__doc__ = GET_JOBS_DOC


__all__ = [
    "BACKOFF_BASE_SECONDS",
    "BACKOFF_CAP_SECONDS",
    "LOCAL_HOSTS",
    "MAX_JOB_WAIT_MS",
    "MAX_RETRY_AFTER_SECONDS",
    "RETRYABLE_STATUSES",
    "AckItem",
    "Backoff",
    "CleanResult",
    "Client",
    "ErasureResult",
    "ErrorEntry",
    "FlowNode",
    "Job",
    "JobId",
    "JobSummary",
    "LeasedJob",
    "Me",
    "Permission",
    "Pulled",
    "PushedJob",
    "QueueInfo",
    "QueueStats",
    "RateLimit",
    "WaitedJob",
    "__version__",
    "backoff_delay",
]
