"""Long-poll wake-ups. On PostgreSQL a push NOTIFYs the queue's name on one channel and
a waiting pull LISTENs on it, so a pull on any app server wakes as soon as work is
committed. SQLite has no such thing; waiters there poll briefly.

A NOTIFY is not free: PostgreSQL serialises the commits of every notifying transaction
(one global lock, held through the WAL flush), so one per push would cap pushes at one
fsync each. A push therefore notifies only when a pull is waiting on its queue, found
with two advisory locks per queue (keyed by ``hashtext(name)``; a collision only costs
a spare NOTIFY), in SQL functions created by migration 0014:

- a waiter holds the *waiters'* lock shared while it waits (``flashq_wait_begin``);
- a push, inside its transaction, takes the *pushers'* lock shared until it commits
  and tries the waiters' lock exclusively (``flashq_wake``): if that fails, someone
  waits, and it NOTIFYs (delivered at commit);
- after registering, a waiter takes and drops the pushers' lock exclusively, which it
  can only do once every push that checked before it registered has committed, so the
  claim the waiter runs next sees their jobs. A push is thus either seen by that claim
  or sends a NOTIFY after the waiter listens: no wake-up is missed. The waiter only
  *tries* that lock, for up to 100 ms (migration 0016): a queued exclusive request
  would make every new push to the queue wait behind it. If it could not drain (pushes
  kept coming), it claims again after ``UNDRAINED_SLICE_SECONDS`` instead of a whole
  slice, which picks up a push that was still in flight.

A waiter needs a session of its own for LISTEN and its lock (see docs/scaling.md on
PgBouncer). Waits are sliced (at most ``SLICE_SECONDS``) so a delayed job that becomes
ready, which sends no notification, is still picked up promptly."""

from __future__ import annotations

import time
from types import TracebackType

from django.db import connection

CHANNEL = "flashq_jobs"
SLICE_SECONDS = 1.0
UNDRAINED_SLICE_SECONDS = 0.05
SQLITE_POLL_SECONDS = 0.1
# Advisory lock classes (the first half of a two-int key; the queue's hash is the second).
WAITERS_CLASS = 0x46510001
PUSHERS_CLASS = 0x46510002


def notify_ready(queue_name: str) -> None:
    """Tell waiting pulls that ``queue_name`` has ready work (sent at commit, and only
    when one is waiting). Call it inside the pushing transaction."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT flashq_wake(%s)", [queue_name])


class Waiter:
    """``with Waiter(name) as waiter: ... waiter.wait(seconds)``. The first ``wait``
    only registers (LISTEN and the waiters' lock) and returns at once, so the caller
    claims again before really waiting; the exit drops both, so a pooled connection is
    left clean."""

    def __init__(self, queue_name: str) -> None:
        self.queue_name = queue_name
        self.listening = False
        self.drained = True
        self.postgresql = connection.vendor == "postgresql" and not connection.in_atomic_block

    def __enter__(self) -> Waiter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.listening:
            self.listening = False
            raw = connection.connection
            if raw is not None and not raw.closed:
                with connection.cursor() as cursor:
                    try:
                        cursor.execute("SELECT flashq_wait_end(%s)", [self.queue_name])
                    finally:
                        cursor.execute(f"UNLISTEN {CHANNEL}")

    def _register(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"LISTEN {CHANNEL}")
            self.listening = True
            cursor.execute("SELECT flashq_wait_begin(%s)", [self.queue_name])
            [(self.drained,)] = cursor.fetchall()

    def wait(self, seconds: float) -> None:
        """Return after ``seconds`` or sooner when work may have arrived."""
        if seconds <= 0:
            return
        if not self.postgresql:
            time.sleep(min(seconds, SQLITE_POLL_SECONDS))
            return
        if not self.listening:
            self._register()
            return
        slice_seconds = SLICE_SECONDS if self.drained else UNDRAINED_SLICE_SECONDS
        self.drained = True
        # psycopg keeps notifications that arrived while we were claiming in a backlog
        # and yields those first, so a push between claim and wait is not missed. Its
        # errors (the database went away mid-wait) are raised as Django's, like any
        # query's: the API answers 503, and the connection is replaced.
        with connection.wrap_database_errors:
            for notify in connection.connection.notifies(timeout=min(seconds, slice_seconds)):
                if notify.payload == self.queue_name:
                    break
