"""The asyncio worker: ``async def`` handlers as tasks on one event loop, beside a
pulling loop, a heartbeat task and an ack flusher task; the same bookkeeping
(``core.Ledger``) and the same server rules (``flows``) as the thread ``Worker``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from ..client import Job, LeasedJob, Pulled
from ..errors import FlashqError
from . import flows
from .base import WorkerBase
from .core import Key, key_of
from .jobs import AsyncWorkerJob

logger = logging.getLogger("flashq_client.worker")

#: Receives the leased job (an ``AsyncWorkerJob``) and is awaited; what it returns
#: (JSON-serialisable) is the job's result.
AsyncHandler = Callable[[Any], Awaitable[Any]]


class AsyncWorkerClient(Protocol):
    """The coroutine methods an ``AsyncWorker`` calls (``AsyncClient`` has them)."""

    async def pull(
        self,
        queue: str,
        *,
        count: int = ...,
        lease: int = ...,
        wait: float = ...,
        ack: Sequence[Mapping[str, Any]] | None = ...,
    ) -> Pulled: ...

    async def ack(self, job_id: str, lease_id: str, result: Any = ...) -> Job: ...

    async def ack_batch(self, acks: Sequence[Mapping[str, Any]]) -> int: ...

    async def fail(
        self,
        job_id: str,
        lease_id: str,
        error: str,
        *,
        code: str | None = ...,
        retry: bool = ...,
        delay_ms: int | None = ...,
    ) -> Job: ...

    async def progress(
        self, job_id: str, lease_id: str, progress: int, message: str = ...
    ) -> Job: ...

    async def release(self, job_id: str, lease_id: str) -> Job: ...

    async def children(self, job_id: str) -> list[Job]: ...


class AsyncWorker(WorkerBase[AsyncWorkerClient, AsyncHandler, asyncio.Event]):
    """Runs the coroutine ``handler`` on the jobs of ``queue``, ``concurrency`` at a
    time, each as a task of the running event loop; ``await run()`` returns after
    SIGTERM, SIGINT or ``stop()``. The same settings, rules and shutdown as ``Worker``,
    with an async client (``AsyncClient``) and ``async def handler(job)``, which receives
    an ``AsyncWorkerJob``.

    A handler must not block the loop (run blocking code with ``asyncio.to_thread``): a
    blocked loop delays every heartbeat. A handler still running after the grace is
    cancelled, its job given back.
    """

    _flag = asyncio.Event
    _loop: asyncio.AbstractEventLoop | None = None

    def stop(self) -> None:
        """Stop pulling and shut down as on SIGTERM; ``run()`` returns when it is done.

        May be called from any thread, and before ``run()`` (which then shuts down at
        once).
        """
        if self._loop is None:
            self._request_stop()
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._request_stop)

    async def run(self) -> None:
        """Work until ``stop()``, SIGTERM or SIGINT; then shut down gracefully.

        SIGTERM and SIGINT are handled (``loop.add_signal_handler``) when the loop runs
        in the main thread.

        Raises:
            FlashqError: what ``Worker.run`` raises when pulling is refused (401, 403,
                404, a bad request), after the same shutdown.
            RuntimeError: the worker ran already (make a new one).

        Retried: as ``Worker.run``: failed pulls are tried again until the worker stops.
        """
        self._start()
        self._loop = loop = asyncio.get_running_loop()
        self._handlers: dict[Key, asyncio.Task[None]] = {}
        signals: dict[signal.Signals, Any] = {}  # each handled signal's previous handler
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                previous = signal.getsignal(sig)
                loop.add_signal_handler(sig, self._signalled)
                signals[sig] = previous
        keepers = [asyncio.create_task(self._heartbeat()), asyncio.create_task(self._flusher())]
        fatal: FlashqError | None = None
        try:
            fatal = await self._pull_loop()
        finally:
            self._request_stop()
            await self._shutdown(keepers)
            for sig, previous in signals.items():
                loop.remove_signal_handler(sig)  # it leaves the default action: put back
                if previous is not None:  # the application's own handler
                    signal.signal(sig, previous)
            self._finish()
        if fatal is not None:
            raise fatal

    async def _drive(self, flow: flows.Flow) -> Any:
        return await flows.adrive(self.client, flow, self._forced_within)

    async def _forced_within(self, seconds: float) -> bool:
        """Wait ``seconds``; True when a second signal came meanwhile."""
        return await _wait(self._force, seconds)

    # -- the pulling loop

    async def _pull_loop(self) -> FlashqError | None:
        while not self._stop.is_set():
            self._wake.clear()
            if (count := self._ledger.to_pull()) <= 0:
                await _wait(self._wake, 0.2)
                continue
            outcome: flows.PullOutcome = await self._drive(flows.pull(self._ledger, count))
            if outcome.fatal is not None:
                return outcome.fatal
            run, back = self._ledger.admit(outcome.jobs, time.monotonic())
            for job in run:
                key = key_of(job)
                self._handlers[key] = asyncio.create_task(self._slot(job, key))
            for job in back:
                await self._drive(flows.give_back(job))
            if outcome.pause:
                await _wait(self._stop, outcome.pause)
        return None

    # -- handler tasks

    async def _slot(self, job: LeasedJob, key: Key) -> None:
        try:
            if (decision := self._ledger.begin(key)) == "give back":
                await self._drive(flows.give_back(job))
            elif decision == "run":
                await self._execute(job, key)
        except Exception:  # the client's own failure: the job's lease runs out
            logger.exception("job %s: could not be reported", key[0])
            self._ledger.forget(key)  # no more heartbeats for it
        finally:
            self._handlers.pop(key, None)
            self._wake.set()

    async def _execute(self, job: LeasedJob, key: Key) -> None:
        sealed = False
        try:
            opened = self._opened(job)  # sealed fields: FieldDecryptionError fails the job
            sealed = opened is not job
            view = AsyncWorkerJob(
                opened, self.client, lambda done, text: self._report(key, done, text)
            )
            result = await self.handler(view)
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # this task was cancelled (at shutdown): the job is given back
            # The handler's own CancelledError (a future it awaited was cancelled): a
            # failure like any other, not a job held for ever.
            await self._drive(flows.finished(self._ledger, job, error=exc, sealed=sealed))
        except BaseException as exc:  # a handler's SystemExit fails its job too
            await self._drive(flows.finished(self._ledger, job, error=exc, sealed=sealed))
        else:
            await self._drive(flows.finished(self._ledger, job, result))

    def _report(self, key: Key, progress: int, message: str) -> None:
        if self._ledger.report(key, progress, message) and self._loop is not None:
            # A handler may report from a thread of its own (asyncio.to_thread).
            self._loop.call_soon_threadsafe(self._beat_wake.set)

    # -- heartbeats, and acks that waited too long (a task each)

    async def _heartbeat(self) -> None:
        while not self._done.is_set():
            self._beat_wake.clear()  # before: a report made while beating is sent next
            try:
                await self._drive(flows.beat(self._ledger))
            except Exception:  # not the server's answer (a bug, a closed client): go on
                logger.exception("heartbeat failed")
            await _wait(self._beat_wake, self.settings.tick)

    async def _flusher(self) -> None:
        while not await _wait(self._done, self.settings.tick):
            try:
                await self._drive(flows.flush_due(self._ledger))
            except Exception:  # the acks were put back: the next tick or pull sends them
                logger.exception("ack flush failed")

    # -- shutdown

    async def _shutdown(self, keepers: list[asyncio.Task[None]]) -> None:
        deadline = self._grace_deadline()
        while self._in_grace(deadline):
            self._wake.clear()
            await _wait(self._wake, 0.1)
        left = self._ledger.abandon()
        for job in left:
            if (task := self._handlers.get(key_of(job))) is not None:
                task.cancel()  # its result would be dropped: free the loop of it
        self._done.set()
        self._beat_wake.set()
        await asyncio.gather(*keepers, return_exceptions=True)
        self._final_interrupt()
        await self._drive(flows.final_flush(self._ledger))
        for job in left:
            await self._drive(flows.give_back(job))


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``event``; whether it is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
    return event.is_set()
