"""An asyncio client of the flashQ REST API: ``AsyncClient``, on ``httpx.AsyncClient``.

It has ``Client``'s methods, as coroutines, with the same arguments, answers, errors
and retries: both carry out the same plans (``calls``, ``_policy``); this module does it
with ``await``. A pause before a retry is an ``asyncio.sleep``: cancelling the task (a
timeout, a shutdown) ends it at once with ``asyncio.CancelledError``.

::

    async with AsyncClient("https://flashq.example.com") as flashq:
        job = await flashq.push("email", {"to": "a@example.com"})
        async for each in flashq.get_jobs("email"):
            ...
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

import httpx

from ._gather import AsyncGatherer
from ._policy import Gather, Outcome, Pause, Plan, retried
from ._settings import Settings
from .calls import Calls, as_method
from .calls.gathering import Outcome as PushOutcome
from .calls.jobs import GET_JOBS_DOC
from .fields import FieldKeys
from .shapes import Job

P = ParamSpec("P")
T = TypeVar("T")


def _awaiting(
    plan: Callable[Concatenate[Calls, P], Plan[T]],
) -> Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, T]]:
    """``AsyncClient``'s coroutine that carries ``plan`` out: same arguments, its result."""

    async def method(self: AsyncClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run(plan(self._calls, *args, **kwargs))

    as_method(method, plan, "AsyncClient")
    return method


class AsyncClient:
    """flashQ's REST API for asyncio, over one reused ``httpx.AsyncClient``.

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
        transport: an ``httpx.AsyncBaseTransport`` instead of the network (tests).
        stop: an ``asyncio.Event``: while it is set, pauses before retries end at once
            and the call raises ``Interrupted`` (an ``AsyncWorker``'s shutdown sets it).
            Cancelling the calling task ends a pause too.
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

    Raises:
        ValueError: a bad ``base_url``, ``max_retries``, field path, ``linger_ms`` or
            ``max_batch``, or no usable token.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 40.0,
        max_retries: int = 4,
        allow_insecure_http: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
        stop: asyncio.Event | None = None,
        field_keys: FieldKeys | None = None,
        encrypt_fields: Sequence[str] = (),
        producer: bool = False,
        linger_ms: float = 2.0,
        max_batch: int = 500,
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
        )
        self.base_url = self._settings.base_url
        self.timeout = timeout
        self.max_retries = max_retries
        self.stop = stop or asyncio.Event()
        #: The keys that seal and open fields, and the paths sealed on push.
        self.field_keys = self._settings.field_keys
        self.encrypt_fields = self._settings.encrypt_fields
        self._calls = Calls(self._settings)
        self._http = httpx.AsyncClient(transport=transport, **self._settings.http_options())
        self._gatherer = AsyncGatherer(self._settings, self._send_batch) if producer else None

    def __repr__(self) -> str:
        return f"AsyncClient(base_url={self.base_url!r})"

    # -- lifecycle

    def interrupt(self) -> None:
        """Set ``stop``: pauses before retries, now and until it is cleared, end at once
        and their calls raise ``Interrupted``. Call it from the client's event loop (from
        another thread: ``loop.call_soon_threadsafe(client.interrupt)``)."""
        self.stop.set()

    async def flush(self) -> None:
        """In producer mode, send the pushes now gathering without waiting out
        ``linger_ms``, and return once every batch gathered or in flight is answered
        (each push returns or raises where it was called). Without it, does nothing."""
        if self._gatherer is not None:
            await self._gatherer.flush()

    async def aclose(self) -> None:
        """Close the connection pool. In producer mode, first refuse new pushes
        (``RuntimeError``) and ``flush``: every push already made gets its answer."""
        if self._gatherer is not None:
            await self._gatherer.close()
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- carrying plans out

    async def _run(self, plan: Plan[T]) -> T:
        steps = retried(plan, self._settings)
        outcome: Outcome = None
        while True:
            try:
                step = steps.send(outcome)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            if isinstance(step, Pause):
                await self._pause(step)
                outcome = None
                continue
            if isinstance(step, Gather):
                assert self._gatherer is not None
                outcome = await self._gatherer.push(step.path, step.body)
                continue
            try:
                outcome = await self._http.request(
                    step.method,
                    step.path,
                    json=step.body,
                    params=step.params,
                    timeout=step.timeout(self._settings.timeout),
                )
            except httpx.TransportError as exc:
                outcome = exc

    async def _send_batch(self, path: str, bodies: list[dict[str, Any]]) -> list[PushOutcome]:
        return await self._run(self._calls.push_gathered(path, bodies))

    async def _pause(self, pause: Pause) -> None:
        if self.stop.is_set():
            raise pause.interrupted()
        try:
            await asyncio.wait_for(self.stop.wait(), pause.seconds)
        except TimeoutError:
            return
        raise pause.interrupted()

    # -- the API (each method is written once, in ``calls``)

    push = _awaiting(Calls.push)
    push_batch = _awaiting(Calls.push_batch)
    push_flow = _awaiting(Calls.push_flow)
    children = _awaiting(Calls.children)
    wait = _awaiting(Calls.wait)
    pull = _awaiting(Calls.pull)
    ack = _awaiting(Calls.ack)
    ack_batch = _awaiting(Calls.ack_batch)
    fail = _awaiting(Calls.fail)
    progress = _awaiting(Calls.progress)
    release = _awaiting(Calls.release)
    snooze = _awaiting(Calls.snooze)
    get_job = _awaiting(Calls.get_job)
    cancel = _awaiting(Calls.cancel)
    update = _awaiting(Calls.update)
    promote = _awaiting(Calls.promote)
    retry = _awaiting(Calls.retry)
    retry_failed = _awaiting(Calls.retry_failed)
    clean = _awaiting(Calls.clean)
    list_queues = _awaiting(Calls.list_queues)
    stats = _awaiting(Calls.stats)
    pause = _awaiting(Calls.pause)
    resume = _awaiting(Calls.resume)
    set_rate_limit = _awaiting(Calls.set_rate_limit)
    remove_rate_limit = _awaiting(Calls.remove_rate_limit)
    set_concurrency = _awaiting(Calls.set_concurrency)
    remove_concurrency = _awaiting(Calls.remove_concurrency)
    set_group_concurrency = _awaiting(Calls.set_group_concurrency)
    remove_group_concurrency = _awaiting(Calls.remove_group_concurrency)
    set_schema = _awaiting(Calls.set_schema)
    remove_schema = _awaiting(Calls.remove_schema)
    me = _awaiting(Calls.me)
    erase = _awaiting(Calls.erase)
    put_schedule = _awaiting(Calls.put_schedule)
    get_schedule = _awaiting(Calls.get_schedule)
    list_schedules = _awaiting(Calls.list_schedules)
    delete_schedule = _awaiting(Calls.delete_schedule)
    pause_schedule = _awaiting(Calls.pause_schedule)
    resume_schedule = _awaiting(Calls.resume_schedule)
    trigger_schedule = _awaiting(Calls.trigger_schedule)

    async def get_jobs(
        self, queue: str, *, state: str | None = None, page_size: int = 100
    ) -> AsyncIterator[Job]:
        cursor: str | None = None
        while True:
            jobs, cursor = await self._run(
                self._calls.jobs_page(queue, state=state, page_size=page_size, cursor=cursor)
            )
            for job in jobs:
                yield job
            if cursor is None:
                return

    get_jobs.__doc__ = GET_JOBS_DOC


__all__ = ["AsyncClient"]
