"""Waiting for a job to finish (``GET /jobs/{id}/wait``): the answer comes as soon as the
job is completed, failed, cancelled or expired, or when the caller's timeout runs out.

On PostgreSQL the wait LISTENs on ``dependents.DONE_CHANNEL``, on which whatever
finishes a *watched* job NOTIFYs its id at commit (``dependents.jobs_finished``). No
finish is missed, whatever the timing:

- the wait LISTENs first, then marks the job watched with an UPDATE of its own
  (autocommitted), then reads its state;
- a finishing transaction that locks the job's row after the mark has committed sees
  ``watched`` and notifies, and the wait is already listening;
- one that locked the row before makes the UPDATE wait until it has committed, so the
  read that follows sees the finished state.

Then it waits in slices of at most ``SLICE_SECONDS`` for a notification naming the job
(others are ignored), reading the state again after each, and after each slice: a
waiting job past its ttl is reported expired without any notification. No transaction
is held meanwhile, and the exit UNLISTENs, so a pooled connection is left clean.
SQLite has no notifications: the wait reads the state every ``SQLITE_POLL_SECONDS``.

A wait holds a server thread as a long-polling pull does, so it counts toward the same
caps (``waitslots``): past them it answers at once with the job as it is and, unless it
has finished, ``retry_after_s``. A job that has finished, or a timeout of 0, takes no
slot. One ``waitJob`` event per wait records whether the job had finished
(``reads.job_wait_read``)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType

from django.conf import settings
from django.db import connection
from django.utils import timezone

from compliance.audit import Actor
from kernel.counters import LONG_POLLS_OVER_CAP

from . import reads, selectors
from .dependents import DONE_CHANNEL
from .models import UNFINISHED, Job
from .waitslots import wait_slot

SLICE_SECONDS = 1.0
SQLITE_POLL_SECONDS = 0.1


@dataclass(frozen=True)
class Waited:
    """The job at the end of a wait, read at ``now`` (its reported state depends on it);
    ``retry_after_s`` when the wait was refused a slot and the job has not finished."""

    job: Job
    finished: bool
    now: datetime
    retry_after_s: int | None = None


def job_wait(*, job_id: uuid.UUID, timeout_ms: int, owner: str, actor: Actor) -> Waited:
    """Wait up to ``timeout_ms`` for the job to finish (see the module docstring);
    ``owner`` is the caller's token family, whose long polls are capped."""
    deadline = time.monotonic() + timeout_ms / 1000
    if timeout_ms <= 0 or _settled(job_id):
        return _answer(job_id, actor)
    with wait_slot(owner) as may_wait:
        if not may_wait:
            LONG_POLLS_OVER_CAP.inc()
            return _answer(job_id, actor, over_cap=True)
        with _DoneListener(job_id) as listener:
            while not _settled(job_id):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                listener.wait(left)
    return _answer(job_id, actor)


def _settled(job_id: uuid.UUID) -> bool:
    """Whether waiting is over for this job: it has finished, or it is gone (the answer
    then is a 404)."""
    job = Job.objects.only("state", "run_at", "expires_at").filter(id=job_id).first()
    return job is None or selectors.reported_finished(job, timezone.now())


def _answer(job_id: uuid.UUID, actor: Actor, *, over_cap: bool = False) -> Waited:
    job, now = reads.job_wait_read(job_id=job_id, actor=actor)
    finished = selectors.reported_finished(job, now)
    retry_after = settings.LONG_POLL_RETRY_AFTER_SECONDS if over_cap and not finished else None
    return Waited(job=job, finished=finished, now=now, retry_after_s=retry_after)


class _DoneListener:
    """``with _DoneListener(job_id) as listener: ... listener.wait(seconds)``: entering
    LISTENs (on PostgreSQL, outside a transaction) and marks the job watched; exiting
    UNLISTENs and drops notifications left unread, so a pooled connection is left as
    it was found."""

    def __init__(self, job_id: uuid.UUID) -> None:
        self.job_id = job_id
        self.payload = str(job_id)
        self.listening = False
        self.postgresql = connection.vendor == "postgresql" and not connection.in_atomic_block

    def __enter__(self) -> _DoneListener:
        if self.postgresql:
            with connection.cursor() as cursor:
                cursor.execute(f"LISTEN {DONE_CHANNEL}")
                self.listening = True
        # After LISTEN, before the state is read: see the module docstring. Only an
        # unfinished job is marked (a finished one has nothing left to notify).
        Job.objects.filter(id=self.job_id, watched=False, state__in=UNFINISHED).update(watched=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.listening:
            return
        self.listening = False
        raw = connection.connection
        if raw is not None and not raw.closed:
            with connection.cursor() as cursor:
                cursor.execute(f"UNLISTEN {DONE_CHANNEL}")
            # Notifications that came while the state was being read wait in psycopg's
            # backlog: read them now, not in the next request to use this connection.
            with connection.wrap_database_errors:
                for _ in raw.notifies(timeout=0):
                    pass

    def wait(self, seconds: float) -> None:
        """Return after ``seconds`` (at most one slice) or sooner, when the job may have
        finished."""
        if seconds <= 0:
            return
        if not self.listening:
            time.sleep(min(seconds, SQLITE_POLL_SECONDS))
            return
        # psycopg yields the notifications that arrived while the state was being read
        # first, so a finish between that read and this wait is not missed. Its errors
        # (the database went away mid-wait) are raised as Django's: the API answers 503.
        with connection.wrap_database_errors:
            for notify in connection.connection.notifies(timeout=min(seconds, SLICE_SECONDS)):
                if notify.payload == self.payload:
                    break
