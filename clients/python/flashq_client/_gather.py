"""Producer mode: concurrent pushes to one queue gathered into one batch request.

The first push to a queue opens a batch and leads it: it waits ``linger_ms`` (or until
``max_batch`` pushes have joined, or a ``flush``), then sends the batch
(``Calls.push_gathered``) and hands every push of it its own outcome. The pushes that
joined wait for that. Nothing is sent or held by a thread of the client's own: a batch
is carried by the thread (or, in ``AsyncGatherer``, a task on the loop) of a push that
is itself waiting for it, so no push is answered before its batch is committed, and
none is left behind in a buffer when the process ends.

``Gatherer`` is for ``Client`` (threads), ``AsyncGatherer`` for ``AsyncClient`` (one
event loop, no threads).
"""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any

from ._settings import Settings
from .calls.gathering import Outcome
from .errors import FlashqError, Interrupted
from .shapes import PushedJob

#: How a client sends a batch: the queue's path and the bodies -> each one's outcome.
Send = Callable[[str, list[dict[str, Any]]], list[Outcome]]
AsyncSend = Callable[[str, list[dict[str, Any]]], Awaitable[list[Outcome]]]

CLOSED = "the client is closed: no more pushes"


def _interrupted(error: BaseException) -> Interrupted:
    return Interrupted(
        f"the batch carrying this push was stopped ({type(error).__name__}): whether it "
        "was stored is unknown",
        code="interrupted",
    )


def _own(outcome: BaseException) -> BaseException:
    """What one push raises for an error it shares: its own copy (raised in its own
    thread, with its own traceback)."""
    if isinstance(outcome, FlashqError):
        return copy.copy(outcome)
    if isinstance(outcome, Exception):
        return outcome
    return _interrupted(outcome)


class _Batch:
    """Pushes to one queue, gathered; ``sealed`` once no more may join."""

    __slots__ = ("bodies", "done", "futures", "sealed")

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.futures: list[Future[PushedJob]] = []
        self.sealed = False
        self.done = False


class Gatherer:
    """Gathers ``Client``'s pushes from many threads (see the module)."""

    def __init__(self, settings: Settings, send: Send) -> None:
        self._send = send
        self._linger = settings.linger_ms / 1000
        self._max = settings.max_batch
        self._lock = threading.Condition()
        self._open: dict[str, _Batch] = {}
        self._unsettled: set[_Batch] = set()
        self._closed = False

    def push(self, path: str, body: dict[str, Any]) -> PushedJob:
        """Push ``body`` to the queue at ``path`` with the others; its job or its error."""
        future: Future[PushedJob] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError(CLOSED)
            batch = self._open.get(path)
            leads = batch is None
            if batch is None:
                batch = self._open[path] = _Batch()
                self._unsettled.add(batch)
            batch.bodies.append(body)
            batch.futures.append(future)
            if len(batch.bodies) >= self._max:
                self._seal(path, batch)
        if leads:
            self._lead(path, batch)
        return future.result()

    def _seal(self, path: str, batch: _Batch) -> None:
        # With the lock held.
        batch.sealed = True
        if self._open.get(path) is batch:
            del self._open[path]
        self._lock.notify_all()

    def _lead(self, path: str, batch: _Batch) -> None:
        try:
            with self._lock:
                deadline = time.monotonic() + self._linger
                while not batch.sealed and (left := deadline - time.monotonic()) > 0:
                    self._lock.wait(left)
                self._seal(path, batch)
            outcomes: list[Outcome | BaseException] = list(self._send(path, batch.bodies))
        except BaseException as error:
            with self._lock:
                self._seal(path, batch)
            outcomes = [error] * len(batch.futures)
            raise
        finally:
            for future, outcome in zip(batch.futures, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    future.set_exception(_own(outcome))
                else:
                    future.set_result(outcome)
            with self._lock:
                batch.done = True
                self._unsettled.discard(batch)
                self._lock.notify_all()

    def flush(self) -> None:
        """Sends every open batch now and waits until each batch gathered or in flight
        has been answered."""
        with self._lock:
            waiting = set(self._unsettled)
            for path, batch in list(self._open.items()):
                self._seal(path, batch)
            while any(not batch.done for batch in waiting):
                self._lock.wait()

    def close(self) -> None:
        """Refuses further pushes, then ``flush``."""
        with self._lock:
            self._closed = True
        self.flush()


class _AsyncBatch:
    __slots__ = ("bodies", "futures", "sealed", "timer")

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.futures: list[asyncio.Future[PushedJob]] = []
        self.sealed = asyncio.Event()
        self.timer: asyncio.TimerHandle | None = None


class AsyncGatherer:
    """Gathers ``AsyncClient``'s pushes from many tasks of one event loop."""

    def __init__(self, settings: Settings, send: AsyncSend) -> None:
        self._send = send
        self._linger = settings.linger_ms / 1000
        self._max = settings.max_batch
        self._open: dict[str, _AsyncBatch] = {}
        self._leaders: set[asyncio.Task[None]] = set()
        self._closed = False

    async def push(self, path: str, body: dict[str, Any]) -> PushedJob:
        """Push ``body`` to the queue at ``path`` with the others; its job or its error.
        Cancelling the caller does not take the push out of its batch: whether it was
        stored is then unknown, as with any cancelled request."""
        if self._closed:
            raise RuntimeError(CLOSED)
        loop = asyncio.get_running_loop()
        batch = self._open.get(path)
        if batch is None:
            batch = self._open[path] = _AsyncBatch()
            batch.timer = loop.call_later(self._linger, self._seal, path, batch)
            # Its own task, not the first caller's: cancelling a caller does not strand
            # the others.
            leader = loop.create_task(self._lead(path, batch))
            self._leaders.add(leader)
            leader.add_done_callback(self._leaders.discard)
        future: asyncio.Future[PushedJob] = loop.create_future()
        batch.bodies.append(body)
        batch.futures.append(future)
        if len(batch.bodies) >= self._max:
            self._seal(path, batch)
        return await future

    def _seal(self, path: str, batch: _AsyncBatch) -> None:
        batch.sealed.set()
        if batch.timer is not None:
            batch.timer.cancel()
        if self._open.get(path) is batch:
            del self._open[path]

    async def _lead(self, path: str, batch: _AsyncBatch) -> None:
        outcomes: list[Outcome | BaseException]
        try:
            await batch.sealed.wait()
            outcomes = list(await self._send(path, batch.bodies))
        except BaseException as error:  # CancelledError too: the callers are told
            self._seal(path, batch)
            outcomes = [error] * len(batch.futures)
            if not isinstance(error, Exception):
                raise
        finally:
            for future, outcome in zip(batch.futures, outcomes, strict=True):
                if future.done():  # its caller was cancelled
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(_own(outcome))
                else:
                    future.set_result(outcome)

    async def flush(self) -> None:
        """Sends every open batch now and waits until each one sent has been answered."""
        for path, batch in list(self._open.items()):
            self._seal(path, batch)
        if self._leaders:
            await asyncio.wait(set(self._leaders))

    async def close(self) -> None:
        """Refuses further pushes, then ``flush``."""
        self._closed = True
        await self.flush()
