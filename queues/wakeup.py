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

The waiters' side lives in queues.notifier: one listening session and one lock session
per process, shared by every waiting request of that process (see docs/scaling.md on
PgBouncer), which applies this argument per process. A job wait reads its job again
every ``SLICE_SECONDS`` (a ttl that runs out sends nothing); SQLite waiters poll every
``SQLITE_POLL_SECONDS``."""

from __future__ import annotations

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
