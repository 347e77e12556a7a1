"""Producer mode on ``AsyncClient``: concurrent pushes to one queue gathered into one
batch request (``Client``'s, with sender threads, is ``_producer``).

The first push to a queue opens a batch, and a task on the loop leads it: it waits
``linger_ms`` (or until ``max_batch`` pushes have joined, or a ``flush``), then sends
the batch (``Calls.push_gathered``) and hands every push of it its own outcome. The
pushes that joined await that, so no push is answered before its batch is committed.
Each batch is its own task: as many are in flight as the callers' tasks make.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ._settings import Settings
from .calls.gathering import Outcome
from .errors import FlashqError, Interrupted
from .shapes import PushedJob

#: How ``AsyncClient`` sends a batch: the queue's path and the bodies -> each outcome.
AsyncSend = Callable[[str, list[dict[str, Any]]], Awaitable[list[Outcome]]]

CLOSED = "the client is closed: no more pushes"


def _interrupted(error: BaseException) -> Interrupted:
    return Interrupted(
        f"the batch carrying this push was stopped ({type(error).__name__}): whether it "
        "was stored is unknown",
        code="interrupted",
    )


def own(outcome: BaseException) -> BaseException:
    """What one push raises for an error it shares: its own copy (raised in its own
    thread, with its own traceback)."""
    if isinstance(outcome, FlashqError):
        return copy.copy(outcome)
    if isinstance(outcome, Exception):
        return outcome
    return _interrupted(outcome)


def unsendable(bodies: Sequence[dict[str, Any]]) -> dict[int, Exception]:
    """The bodies that cannot be sent as JSON (a datetime, NaN, a lone surrogate), by
    position, each with what httpx raises for it, so what a single push raises. A batch
    holding one fails as it is encoded, before any request: nothing of it was sent, and
    the others go again without it."""
    found: dict[int, Exception] = {}
    for index, body in enumerate(bodies):
        try:  # as httpx encodes a request's json=
            json.dumps(body, ensure_ascii=False, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as error:
            found[index] = error
    return found


def merged(
    size: int, refused: dict[int, Exception], rest: list[int], sent: Sequence[Any]
) -> list[Any]:
    """The outcomes of a batch of ``size``: ``refused``'s errors, and the outcomes of the
    positions ``rest`` sent again."""
    outcomes: dict[int, Any] = {**refused, **dict(zip(rest, sent, strict=True))}
    return [outcomes[index] for index in range(size)]


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
            outcomes = await self._outcomes(path, batch.bodies)
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
                    future.set_exception(own(outcome))
                else:
                    future.set_result(outcome)

    async def _outcomes(
        self, path: str, bodies: list[dict[str, Any]]
    ) -> list[Outcome | BaseException]:
        """Each body's outcome; one that cannot be sent fails alone (``unsendable``)."""
        try:
            return list(await self._send(path, bodies))
        except (TypeError, ValueError) as error:
            refused = unsendable(bodies)
            if not refused:
                return [error] * len(bodies)
        rest = [index for index in range(len(bodies)) if index not in refused]
        sent = await self._outcomes(path, [bodies[index] for index in rest]) if rest else []
        return merged(len(bodies), refused, rest, sent)

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
