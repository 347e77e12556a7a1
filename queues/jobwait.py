"""Waiting for a job to finish (``GET /jobs/{id}/wait``): the answer comes as soon as the
job is completed, failed, cancelled or expired, or when the caller's timeout runs out.
The steps are here; queues.waiting runs them, awaiting in between.

On PostgreSQL the wait is woken by ``dependents.DONE_CHANNEL``, on which whatever
finishes a *watched* job NOTIFYs its id at commit (``dependents.jobs_finished``), heard
by the process's listener (queues.notifier). No finish is missed, whatever the timing:

- the wait registers with the listener first (which LISTENs all along), then marks the
  job watched with an UPDATE of its own (autocommitted), then reads its state;
- a finishing transaction that locks the job's row after the mark has committed sees
  ``watched`` and notifies after it, and the wait is registered by then;
- one that locked the row before makes the UPDATE wait until it has committed, so the
  read that follows sees the finished state.

Then it waits in slices of at most ``wakeup.SLICE_SECONDS`` for a notification naming
the job, reading the state again after each: a waiting job past its ttl is reported
expired without any notification. SQLite has no notifications: the wait reads the state
every ``wakeup.SQLITE_POLL_SECONDS``.

A wait counts toward the long-poll caps (``waitslots``) as a pull does: past them it
answers at once with the job as it is and, unless it has finished, ``retry_after_s``. A
job that has finished, or a timeout of 0, takes no slot. One ``waitJob`` event per wait
records whether the job had finished (``reads.job_wait_read``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from compliance.audit import Actor

from . import reads, selectors
from .models import UNFINISHED, Job


@dataclass(frozen=True)
class Waited:
    """The job at the end of a wait, read at ``now`` (its reported state depends on it);
    ``retry_after_s`` when the wait was refused a slot and the job has not finished."""

    job: Job
    finished: bool
    now: datetime
    retry_after_s: int | None = None


def job_settled(job_id: uuid.UUID) -> bool:
    """Whether waiting is over for this job: it has finished, or it is gone (the answer
    then is a 404)."""
    job = Job.objects.only("state", "run_at", "expires_at").filter(id=job_id).first()
    return job is None or selectors.reported_finished(job, timezone.now())


def job_watch(job_id: uuid.UUID) -> None:
    """Mark the job watched, so that its finish NOTIFYs: after registering with the
    listener, before reading its state (see the module docstring). Only an unfinished
    job is marked (a finished one has nothing left to notify)."""
    Job.objects.filter(id=job_id, watched=False, state__in=UNFINISHED).update(watched=True)


def job_answer(job_id: uuid.UUID, actor: Actor, *, over_cap: bool = False) -> Waited:
    """The wait's answer and its one event."""
    job, now = reads.job_wait_read(job_id=job_id, actor=actor)
    finished = selectors.reported_finished(job, now)
    retry_after = settings.LONG_POLL_RETRY_AFTER_SECONDS if over_cap and not finished else None
    return Waited(job=job, finished=finished, now=now, retry_after_s=retry_after)
