"""Long-poll wake-ups. On PostgreSQL a push NOTIFYs the queue's name on one channel and
a waiting pull LISTENs on it, so a pull on any app server wakes as soon as work is
committed. SQLite has no such thing; waiters there poll briefly.

Waits are sliced (at most ``SLICE_SECONDS``) so a delayed job that becomes ready, which
sends no notification, is still picked up promptly."""

from __future__ import annotations

import time
from types import TracebackType

from django.db import connection

CHANNEL = "flashq_jobs"
SLICE_SECONDS = 1.0
SQLITE_POLL_SECONDS = 0.1


def notify_ready(queue_name: str) -> None:
    """Tell waiting pulls that ``queue_name`` has ready work (sent at commit)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, queue_name])


class Waiter:
    """``with Waiter(name) as waiter: ... waiter.wait(seconds)`` - LISTEN for the
    duration of a long poll, UNLISTEN after, so a pooled connection is left clean."""

    def __init__(self, queue_name: str) -> None:
        self.queue_name = queue_name
        self.listening = False

    def __enter__(self) -> Waiter:
        if connection.vendor == "postgresql" and not connection.in_atomic_block:
            with connection.cursor() as cursor:
                cursor.execute(f"LISTEN {CHANNEL}")
            self.listening = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.listening:
            raw = connection.connection
            if raw is not None and not raw.closed:
                with connection.cursor() as cursor:
                    cursor.execute(f"UNLISTEN {CHANNEL}")
            self.listening = False

    def wait(self, seconds: float) -> None:
        """Return after ``seconds`` or sooner when work may have arrived."""
        if seconds <= 0:
            return
        if not self.listening:
            time.sleep(min(seconds, SQLITE_POLL_SECONDS))
            return
        # psycopg keeps notifications that arrived while we were claiming in a backlog
        # and yields those first, so a push between claim and wait is not missed.
        for notify in connection.connection.notifies(timeout=min(seconds, SLICE_SECONDS)):
            if notify.payload == self.queue_name:
                break
