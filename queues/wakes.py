"""What a waiting request holds while it waits (queues.waiting): a ``Wake``, set by
this process's listener (queues.notifier) when its queue may have work or its job may
have finished; and a queue's ``Mark``, which says whether anything was dispatched for the
queue between a claim and the waiter's registration (queues.notifier explains why that
lets a waiter skip a claim)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import NamedTuple

from .wakeup import SQLITE_POLL_SECONDS, UNDRAINED_SLICE_SECONDS


class Mark(NamedTuple):
    """A queue's state of notification in this process (``Notifier.mark``)."""

    epoch: int
    seq: int


class Wake:
    """A waiter's event, set from the notifier's thread (or at once, by a reset)."""

    def __init__(self, *, postgresql: bool, slice_seconds: float | None) -> None:
        self.loop = asyncio.get_running_loop()
        self.event = asyncio.Event()
        self.postgresql = postgresql
        self.slice_seconds = slice_seconds
        self.drained = True
        #: Whether the waiter's round before it registered saw all there was (``Mark``).
        self.covered = False

    def set(self) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: its request is gone
            self.loop.call_soon_threadsafe(self.event.set)

    async def wait(self, seconds: float) -> bool:
        """Return after ``seconds`` (at most one slice) or sooner, when woken: whether
        there may be new work to look for. Only a drained queue's waiter that was not
        woken knows there is none (a notification would have woken it)."""
        if seconds <= 0:
            return True
        if not self.postgresql:
            await asyncio.sleep(min(seconds, SQLITE_POLL_SECONDS))
            return True
        drained = self.drained
        if not drained:
            seconds = min(seconds, UNDRAINED_SLICE_SECONDS)
        elif self.slice_seconds is not None:
            seconds = min(seconds, self.slice_seconds)
        self.drained = True
        try:
            async with asyncio.timeout(seconds):
                await self.event.wait()
        except TimeoutError:
            pass
        woken = self.event.is_set()
        self.event.clear()
        return woken or not drained or self.slice_seconds is not None
