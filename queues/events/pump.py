"""One event pump per process: the job event log read once for every subscriber.

While anyone listens, a daemon thread reads ``events_after`` every
``EVENT_STREAM_POLL_MS`` (at once again after a full batch) and hands each subscriber
the events of the queues it may read. With nobody listening the thread ends and closes
its database connection: the cost is one indexed query per poll per process, whatever
the number of subscribers, and nothing at all without them. (A NOTIFY-gated wake would
save the idle polls but needs a listening connection per process and a trigger change;
a 200 ms poll already meets the latency a dashboard needs.)

Subscribers live on an asyncio event loop (the ASGI server's); the pump thread appends
to each one's bounded buffer and wakes it with ``call_soon_threadsafe``. A subscriber
that lets ``EVENT_STREAM_MAX_BEHIND`` events pile up has its buffer dropped and is told
(``behind_through``): the stream sends ``reset`` rather than let memory grow.

Only the pump thread holds a connection: subscribers hold none between their reads."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection

from ..eventmodels import JobEvent
from ..models import Queue
from .log import Cursor, events_after, latest

logger = logging.getLogger("flashq.events")

BATCH = 500
#: How long the pump waits after a failed read before it reads again.
RETRY_SECONDS = 1.0


class Subscriber:
    """One stream's end of the pump. ``reaches(queue_name)`` says whether it may hear
    about a queue; its answers are remembered until ``forget`` (the token changed)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, reaches: Callable[[str], bool]) -> None:
        self.loop = loop
        self.wake = asyncio.Event()
        self.buffer: deque[JobEvent] = deque()
        #: Set by the pump when it dropped this subscriber's backlog: the newest dropped.
        self.behind_through: Cursor | None = None
        self._reaches = reaches
        self._decided: dict[str, bool] = {}

    def forget(self, reaches: Callable[[str], bool]) -> None:
        self._reaches = reaches
        self._decided = {}

    def wants(self, queue_name: str | None) -> bool:
        if queue_name is None:
            return False
        decided = self._decided.get(queue_name)
        if decided is None:
            decided = self._decided[queue_name] = self._reaches(queue_name)
        return decided

    def offer(
        self, events: list[JobEvent], names: dict[int, str], queues: set[int] | None = None
    ) -> None:
        """In the pump thread: keep the events it may hear about (``queues``: the ids
        of the queues they are on, shared by every subscriber of a round; each queue is
        asked about once, not each event), then wake it. A round's events mostly come
        from a few busy queues that most subscribers do not follow: those cost one look
        each, whatever the number of events."""
        if queues is None:
            queues = {event.queue_id for event in events}
        wanted = {queue_id for queue_id in queues if self.wants(names.get(queue_id))}
        if not wanted:
            return
        mine = events if wanted == queues else [e for e in events if e.queue_id in wanted]
        self.buffer.extend(mine)
        if len(self.buffer) > settings.EVENT_STREAM_MAX_BEHIND:
            self.behind_through = Cursor.of(self.buffer[-1])
            self.buffer.clear()
        with contextlib.suppress(RuntimeError):  # its loop closed: the stream is gone
            self.loop.call_soon_threadsafe(self.wake.set)


class Pump:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: set[Subscriber] = set()
        self._thread: threading.Thread | None = None
        self._cursor: Cursor | None = None
        self._names: dict[int, str] = {}
        self._names_read = 0.0

    @property
    def names(self) -> dict[int, str]:
        """Queue id -> name, as last read."""
        return self._names

    def join(self, subscriber: Subscriber) -> Cursor:
        """Add ``subscriber`` (from a thread that may use the database) and return the
        pump's cursor: every later event reaches the subscriber through its buffer, so
        it reads the log itself only up to this cursor."""
        with self._lock:
            if self._cursor is None:
                self._cursor = latest()
                self._read_names()
            self._subscribers.add(subscriber)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="flashq-events", daemon=True)
                self._thread.start()
            return self._cursor

    def leave(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(subscriber)

    def listening(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def _read_names(self) -> None:
        self._names = dict(Queue.objects.values_list("id", "name"))
        self._names_read = time.monotonic()

    def _run(self) -> None:
        try:
            while self._round():
                pass
        finally:
            with self._lock:  # however it ended, the next join starts another
                if self._thread is threading.current_thread():
                    self._thread, self._cursor = None, None
            _close_quietly()

    def _round(self) -> bool:
        """One read and fan-out; False once nobody listens (the thread then ends)."""
        with self._lock:
            if not self._subscribers:
                self._thread, self._cursor = None, None
                return False
            cursor = self._cursor
        assert cursor is not None
        try:
            close_old_connections()
            events = events_after(cursor, limit=BATCH)
            stale = time.monotonic() - self._names_read > settings.EVENT_STREAM_QUEUE_SECONDS
            if stale or any(event.queue_id not in self._names for event in events):
                self._read_names()  # a queue made since the last read: name it first
        except DatabaseError as exc:
            logger.warning("event pump: database unavailable: %s", type(exc).__name__)
            _close_quietly()
            time.sleep(RETRY_SECONDS)
            return True
        except Exception:  # InterfaceError (not a DatabaseError), a bug: read again
            logger.exception("event pump: read failed")
            _close_quietly()
            time.sleep(RETRY_SECONDS)
            return True
        if events:
            # Under the lock: a subscriber joining now either is handed these events
            # or starts after them, never neither.
            with self._lock:
                self._cursor = Cursor.of(events[-1])
                subscribers = list(self._subscribers)
            queues = {event.queue_id for event in events}
            for subscriber in subscribers:
                try:
                    subscriber.offer(events, self._names, queues)
                except Exception:  # its reaches failed: the others still hear
                    logger.exception("event pump: a subscriber failed")
        if len(events) < BATCH:
            time.sleep(settings.EVENT_STREAM_POLL_MS / 1000)
        return True


def _close_quietly() -> None:
    """Close the pump thread's connection, broken or not."""
    try:
        connection.close()
    except Exception:
        logger.warning("event pump: closing its connection failed", exc_info=True)


PUMP = Pump()
