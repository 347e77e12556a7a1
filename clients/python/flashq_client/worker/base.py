"""What the thread ``Worker`` and the ``AsyncWorker`` share beyond the ledger and the
flows: their settings, counts, stopping and the hook on the client's retry pauses."""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from ..fields import open_job
from ..shapes import LeasedJob
from .core import Ledger, Settings

logger = logging.getLogger("flashq_client.worker")

ClientT = TypeVar("ClientT")
HandlerT = TypeVar("HandlerT")

#: The client's event (``Client.stop``, a ``threading.Event``; ``AsyncClient.stop``, an
#: ``asyncio.Event``): set, it ends the pause between two tries of a call (the call
#: then raises ``Interrupted``). A running worker puts its own there, and gives the
#: client's back when it stops.
INTERRUPT_ATTRIBUTE = "stop"

#: The clients whose ``stop`` a running worker holds: a second worker sharing one leaves
#: it alone (its SIGTERM then does not cut that client's retry pauses short).
_HOOKED: weakref.WeakSet[Any] = weakref.WeakSet()


class Flag(Protocol):
    """A ``threading.Event`` or an ``asyncio.Event``, as both workers use them."""

    def set(self) -> None: ...

    def is_set(self) -> bool: ...

    def clear(self) -> None: ...


FlagT = TypeVar("FlagT", bound=Flag)


class WorkerBase(Generic[ClientT, HandlerT, FlagT]):
    """A worker's settings, counts and stopping."""

    #: What each kind of worker waits on: threading.Event or asyncio.Event.
    _flag: Callable[[], FlagT]

    def __init__(
        self,
        client: ClientT,
        queue: str,
        handler: HandlerT,
        *,
        concurrency: int = 1,
        lease: int = 30,
        batch: int | None = None,
        wait: float = 20.0,
        heartbeat: float | None = None,
        grace: float = 20.0,
    ) -> None:
        """A worker of ``queue``; nothing happens until ``run()``.

        Args:
            client: The client to call the server with; its token needs ``pull``,
                ``ack``, ``fail`` and ``progress`` on the queue.
            queue: The queue to work.
            handler: Called with each leased job; its return value (JSON) is the job's
                result, an exception fails the job.
            concurrency: Handlers running at once.
            lease: Seconds each pulled job is leased for; heartbeats extend it.
            batch: Most jobs per pull (default: as many as there are free slots).
            wait: Seconds a pull long-polls for jobs; also the longest a pull under
                way when SIGTERM comes may take.
            heartbeat: Seconds between a running job's heartbeats (default
                ``lease / 3``).
            grace: Seconds running handlers get to finish after SIGTERM or ``stop()``.

        Raises:
            ValueError: a setting is out of range.
        """
        self.settings = Settings(queue, concurrency, lease, batch, wait, heartbeat, grace)
        self.client = client
        self.handler = handler
        self._ledger = Ledger(self.settings)
        self._wake = self._flag()  # a slot freed, or the worker stops
        self._beat_wake = self._flag()  # a handler reported: a heartbeat now
        self._stop = self._flag()
        self._force = self._flag()  # a second signal: no more waiting
        self._done = self._flag()  # the heartbeat and the flusher end
        # Given to the client (when it takes one): ends its pauses between retries.
        self._interrupt = self._flag()
        self._hooked = False
        self._clients_own: object = None
        self._stop_time: float | None = None
        self._started = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(queue={self.queue!r}, concurrency={self.concurrency})"

    @property
    def queue(self) -> str:
        """The queue worked."""
        return self.settings.queue

    @property
    def concurrency(self) -> int:
        """Handlers running at once."""
        return self.settings.concurrency

    @property
    def completed(self) -> int:
        """Jobs completed (acked) by this worker so far."""
        return self._ledger.completed

    @property
    def failed(self) -> int:
        """Jobs failed by this worker so far."""
        return self._ledger.failed

    # -- starting and stopping

    def _start(self) -> None:
        if self._started:
            raise RuntimeError(f"a {type(self).__name__} runs once; make a new one")
        self._started = True
        # A client with a stop event: the worker's stop ends its retry pauses. Its own
        # event is given back at the end.
        self._hooked = hasattr(self.client, INTERRUPT_ATTRIBUTE) and self.client not in _HOOKED
        if self._hooked:
            _HOOKED.add(self.client)
            self._clients_own = getattr(self.client, INTERRUPT_ATTRIBUTE)
            setattr(self.client, INTERRUPT_ATTRIBUTE, self._interrupt)
        logger.info(
            "worker started: queue %s, concurrency %d, lease %d s (%s)",
            self.queue,
            self.concurrency,
            self.settings.lease,
            type(self).__name__,
        )

    def _opened(self, job: LeasedJob) -> LeasedJob:
        """The job as its handler sees it: its sealed fields opened with the client's
        ``field_keys`` (``flashq_client.fields``); the job itself is left as it is."""
        return open_job(job, getattr(self.client, "field_keys", None))

    def _request_stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop_time = time.monotonic()
        self._ledger.stopping = True
        self._interrupt.set()
        self._stop.set()
        self._wake.set()

    def _signalled(self) -> None:
        """SIGTERM or SIGINT: stop; a second one skips the rest of the grace."""
        if self._stop.is_set():
            logger.warning("second signal: giving up the rest of the grace")
            self._force.set()
            self._interrupt.set()  # at shutdown a new one: its retry pauses end too
        self._request_stop()

    def _grace_deadline(self) -> float:
        deadline = (self._stop_time or time.monotonic()) + self.settings.grace
        if busy := self._ledger.busy():
            logger.info(
                "stopping: waiting up to %.1f s for %d job(s) in hand", self.settings.grace, busy
            )
        return deadline

    def _in_grace(self, deadline: float) -> bool:
        """Jobs are in hand, and the grace is not over."""
        if self._force.is_set() or time.monotonic() >= deadline:
            return False
        return self._ledger.busy() > 0

    def _final_interrupt(self) -> None:
        """The grace is over: from here on only a second signal cuts the client's retry
        pauses (the final ack flush and the give-backs may retry)."""
        self._interrupt = self._flag()
        if self._force.is_set():
            self._interrupt.set()
        if self._hooked:
            setattr(self.client, INTERRUPT_ATTRIBUTE, self._interrupt)

    def _finish(self) -> None:
        if self._hooked:
            setattr(self.client, INTERRUPT_ATTRIBUTE, self._clients_own)
            _HOOKED.discard(self.client)
        logger.info("worker stopped: %d completed, %d failed", self.completed, self.failed)
