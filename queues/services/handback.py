"""A worker handing back a job it holds, the attempt not counted: ``release`` (waiting
again at once) and ``snooze`` (waiting again after a delay, Oban's snooze). Both need the
job's current lease, from the token family that claimed it, like ack and fail."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from compliance.audit import Action, Actor, audit_record

from .. import wakeup
from ..failures import LEASE_FIELDS, release_lease
from ..models import Job, JobState
from .reports import _leased_for_update


def _hand_back(
    *, job_id: uuid.UUID, lease_id: uuid.UUID, owner: str, run_at: datetime | None, now: datetime
) -> Job:
    """In the caller's transaction: the leased job back to waiting from ``run_at`` (None:
    its own run_at, so it is back in its place, ahead of its group's later jobs), its
    attempt uncounted (the claim counted it)."""
    job = _leased_for_update(job_id, lease_id, owner, now)
    job.state = JobState.WAITING
    job.attempts = max(job.attempts - 1, 0)
    if run_at is not None:
        job.run_at = run_at
    # A ttl is a limit on starting: this job started, so a hand-back never expires it.
    job.expires_at = None
    release_lease(job)
    job.save(update_fields=["state", "attempts", "run_at", "expires_at", *LEASE_FIELDS])
    return job


def job_release(*, job_id: uuid.UUID, lease_id: uuid.UUID, owner: str, actor: Actor) -> Job:
    """Give a held job back at once (a worker shutting down): waiting and ready in its
    place (its run_at is kept, so a group's order survives a shutdown), the attempt not
    counted, waiting pulls woken."""
    now = timezone.now()
    with transaction.atomic():
        job = _hand_back(job_id=job_id, lease_id=lease_id, owner=owner, run_at=None, now=now)
        wakeup.notify_ready(job.queue.name)
        audit_record(
            actor=actor,
            action=Action.RELEASE,
            queue=job.queue.name,
            job_ids=[job_id],
            details={"attempts": job.attempts},
        )
    return job


def job_snooze(
    *, job_id: uuid.UUID, lease_id: uuid.UUID, owner: str, delay_ms: int, actor: Actor
) -> Job:
    """Give a held job back to run again after ``delay_ms`` (the worker is not ready for
    it yet), the attempt not counted."""
    now = timezone.now()
    with transaction.atomic():
        job = _hand_back(
            job_id=job_id,
            lease_id=lease_id,
            owner=owner,
            run_at=now + timedelta(milliseconds=delay_ms),
            now=now,
        )
        if delay_ms == 0:
            wakeup.notify_ready(job.queue.name)
        audit_record(
            actor=actor,
            action=Action.SNOOZE,
            queue=job.queue.name,
            job_ids=[job_id],
            details={"delay_ms": delay_ms, "attempts": job.attempts},
        )
    return job
