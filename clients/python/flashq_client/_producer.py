"""Producer mode for ``Client``: pushes handed to the client's sender threads, which
gather them by queue into batch requests and keep several in flight at once.

``Client.submit`` (and ``push``, which waits for the same future) puts a push's body in
its queue's line and returns a ``concurrent.futures.Future`` at once. A sender thread
(daemon, named ``flashq-producer-N``, started on first use, at most ``max_in_flight`` of
them, each with one request in flight) takes a line's pushes, up to ``max_batch``, once
its first push has waited ``linger_ms``, or ``max_batch`` have gathered, or on
``flush``; sends them with ``Calls.push_gathered`` (retries included) and settles each
push's future with its own job or error, only once the batch was answered. While every
sender is busy the lines keep gathering, so batches grow with the load.

Back-pressure: at most ``max_pending`` pushes are pending (gathering or in flight);
``submit`` blocks until one is settled, so memory stays bounded. ``close`` refuses new
pushes, waits for every pending one and stops the threads; an ``atexit`` hook does the
same for a client left open, waiting at most ``FLUSH_AT_EXIT_SECONDS``. A push still
without an answer when such a wait runs out fails with ``Interrupted``: ``not_sent``
(it was never sent: not stored) or ``unanswered`` (sent, no answer: whether it was
stored is unknown). No future resolves as pushed unless its batch was committed.

``fork()`` copies a producer but not its sender threads, and perhaps a lock one of them
held: the child's producer starts afresh (``Producer._forked``), with senders of its
own on its first push. The pushes pending at the fork stay the parent's, which sends
them and settles their futures; the child neither sends them again nor settles its
copies of their futures (a parent thread may have held one's lock).
"""

from __future__ import annotations

import atexit
import concurrent.futures
import itertools
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from typing import Any

from ._gather import CLOSED, merged, own, unsendable
from ._settings import Settings
from .calls.gathering import Outcome
from .errors import Interrupted
from .shapes import PushedJob

logger = logging.getLogger("flashq_client")

#: How a client sends a batch: the queue's path and the bodies -> each one's outcome.
Send = Callable[[str, list[dict[str, Any]]], list[Outcome]]

#: How long the ``atexit`` hook waits for the pushes of a client left open.
FLUSH_AT_EXIT_SECONDS = 10.0
_NUMBERS = itertools.count(1)


class _Push:
    __slots__ = ("body", "future", "seq", "since")

    def __init__(self, body: dict[str, Any], seq: int, since: float) -> None:
        self.body = body
        self.seq = seq
        self.since = since
        self.future: Future[PushedJob] = Future()
        # Running: cancel() is refused, a submitted push is sent.
        self.future.set_running_or_notify_cancel()


def _settle(future: Future[PushedJob], outcome: Outcome | BaseException) -> None:
    try:
        if isinstance(outcome, BaseException):
            future.set_exception(own(outcome))
        else:
            future.set_result(outcome)
    except InvalidStateError:  # already failed by a close whose wait ran out
        pass


class Producer:
    """``Client``'s pushes in producer mode (see the module)."""

    def __init__(self, settings: Settings, send: Send) -> None:
        self._send = send
        self._linger = settings.linger_ms / 1000
        self._max_batch = settings.max_batch
        self._max_in_flight = settings.max_in_flight
        self._max_pending = settings.max_pending
        self._seq = 0
        self._flush_upto = 0  # the pushes up to this one go now
        self._closed = False
        self._stopping = False
        self._start_afresh()
        _PRODUCERS.add(self)

    def _start_afresh(self) -> None:
        lock = threading.Lock()
        self._work = threading.Condition(lock)  # senders wait here for a batch
        self._room = threading.Condition(lock)  # submit waits here for room
        self._lines: dict[str, deque[_Push]] = {}
        self._in_flight: dict[int, list[_Push]] = {}
        self._pending = 0
        self._senders: list[threading.Thread] = []
        self._sending = 0

    def _forked(self) -> None:
        """In the child of a ``fork()``: no sender of the parent runs here (see the
        module)."""
        atexit.unregister(self._at_exit)
        self._start_afresh()

    # -- callers

    def submit(self, path: str, body: dict[str, Any]) -> Future[PushedJob]:
        """Queue ``body`` for the queue at ``path``; its future. Blocks while
        ``max_pending`` pushes are pending."""
        with self._work:
            while self._pending >= self._max_pending and not self._closed:
                self._room.wait()
            if self._closed:
                raise RuntimeError(CLOSED)
            self._seq += 1
            push = _Push(body, self._seq, time.monotonic())
            line = self._lines.get(path)
            if line is None:
                line = self._lines[path] = deque()
            line.append(push)
            self._pending += 1
            if self._sending == len(self._senders) < self._max_in_flight:
                self._start_sender()
            elif len(line) == 1 or len(line) >= self._max_batch:
                # A new deadline, or a full batch: an idle sender looks again.
                self._work.notify()
        return push.future

    def flush(self, timeout: float | None = None) -> bool:
        """Sends every line now; True once every push pending at the call is settled,
        False if ``timeout`` seconds passed first."""
        self._refuse_senders("flush")
        with self._work:
            futures = [push.future for line in self._lines.values() for push in line]
            futures += [push.future for batch in self._in_flight.values() for push in batch]
            self._flush_upto = self._seq
            self._work.notify_all()
        _, waiting = concurrent.futures.wait(futures, timeout)
        return not waiting

    def close(self, timeout: float | None = None) -> bool:
        """Refuses new pushes, ``flush``, stops the senders. After ``timeout`` seconds
        the pushes still pending fail (``Interrupted``); False if any did."""
        self._refuse_senders("close")
        atexit.unregister(self._at_exit)
        with self._work:
            self._closed = True
            self._room.notify_all()
        flushed = self.flush(timeout)
        with self._work:
            self._stopping = True
            self._work.notify_all()
            senders = list(self._senders)
            never_sent = [push for line in self._lines.values() for push in line]
            self._lines.clear()
            unanswered = [push for batch in self._in_flight.values() for push in batch]
        if flushed:
            for sender in senders:
                sender.join()
            return True
        for push in never_sent:
            _settle(push.future, Interrupted(_NOT_SENT, code="not_sent"))
        for push in unanswered:
            _settle(push.future, Interrupted(_UNANSWERED, code="unanswered"))
        return False

    def in_sender(self) -> bool:
        """Whether the calling thread is one of the senders (a future's callback)."""
        return threading.current_thread() in self._senders

    def _refuse_senders(self, what: str) -> None:
        if self.in_sender():
            raise RuntimeError(
                f"{what} from a push future's callback would wait for its own sender thread"
            )

    def _at_exit(self) -> None:
        if not self.close(FLUSH_AT_EXIT_SECONDS):
            logger.warning(
                "flashq producer: pushes still without an answer %.0f s after exit "
                "were failed (Interrupted)",
                FLUSH_AT_EXIT_SECONDS,
            )

    # -- senders

    def _start_sender(self) -> None:
        # With the lock held.
        if not self._senders:
            atexit.register(self._at_exit)
        sender = threading.Thread(
            target=self._sender, name=f"flashq-producer-{next(_NUMBERS)}", daemon=True
        )
        self._senders.append(sender)
        sender.start()

    def _sender(self) -> None:
        while True:
            with self._work:
                while True:
                    taken = self._take()
                    if isinstance(taken, tuple):
                        break
                    if self._stopping and not self._lines:
                        return
                    self._work.wait(taken)
                path, batch = taken
                self._sending += 1
                self._in_flight[id(batch)] = batch
            self._deliver(path, batch)

    def _take(self) -> tuple[str, list[_Push]] | float | None:
        """With the lock held: the next batch (from the ready line whose first push has
        waited longest), else the seconds until a line is ready (None: no line)."""
        now = time.monotonic()
        chosen: deque[_Push] | None = None
        chosen_path = ""
        wait: float | None = None
        for path, line in self._lines.items():
            head = line[0]
            left = head.since + self._linger - now
            ready = (
                left <= 0
                or len(line) >= self._max_batch
                or head.seq <= self._flush_upto
                or self._closed
            )
            if ready and (chosen is None or head.since < chosen[0].since):
                chosen, chosen_path = line, path
            elif not ready:
                wait = left if wait is None else min(wait, left)
        if chosen is None:
            return wait
        batch = [chosen.popleft() for _ in range(min(len(chosen), self._max_batch))]
        if not chosen:
            del self._lines[chosen_path]
        return chosen_path, batch

    def _deliver(self, path: str, batch: list[_Push]) -> None:
        outcomes = self._outcomes(path, [push.body for push in batch])
        with self._work:
            # Room first: a callback that submits finds it.
            self._pending -= len(batch)
            self._room.notify(len(batch))
        for push, outcome in zip(batch, outcomes, strict=True):
            _settle(push.future, outcome)
        with self._work:
            self._sending -= 1
            del self._in_flight[id(batch)]

    def _outcomes(self, path: str, bodies: list[dict[str, Any]]) -> list[Outcome | BaseException]:
        """Each body's outcome; one that cannot be sent fails alone (``unsendable``)."""
        try:
            return list(self._send(path, bodies))
        except (TypeError, ValueError) as error:
            refused = unsendable(bodies)
            if not refused:
                return [error] * len(bodies)
        except BaseException as error:  # each push is told; the sender goes on
            return [error] * len(bodies)
        rest = [index for index in range(len(bodies)) if index not in refused]
        sent = self._outcomes(path, [bodies[index] for index in rest]) if rest else []
        return merged(len(bodies), refused, rest, sent)


#: Every producer of the process, for the child of a fork().
_PRODUCERS: weakref.WeakSet[Producer] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for producer in list(_PRODUCERS):
        producer._forked()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork()
    os.register_at_fork(after_in_child=_after_fork_in_child)

_NOT_SENT = "the client closed before this push was sent: it was not stored"
_UNANSWERED = (
    "the client closed before this push's batch was answered: whether it was stored is unknown"
)
