"""What producers and operators do to a job: cancel, update, retry and delete."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from compliance.audit import Action, Actor, audit_record
from security.cards import find_cards

from .. import wakeup
from ..errors import StateConflict
from ..jobspec import encoded_size, subject_from
from ..models import UNFINISHED, Job, JobState
from .common import (
    job_for_update,
    refuse_cards_in_data,
    refuse_cards_in_subjects,
    refuse_off_schema,
    refuse_oversize,
)
from .reports import LEASE_FIELDS, release_lease


def _reason(reason: str) -> dict[str, str]:
    """An operator's reason for the audit event (the admin asks for one)."""
    return {"reason": reason[:500]} if reason else {}


def jobs_delete(*, job_ids: Sequence[uuid.UUID], reason: str, actor: Actor) -> int:
    """Delete jobs in any state, in one transaction and one event (an active job's
    worker then gets 404 on ack). Returns how many were deleted."""
    with transaction.atomic():
        rows = list(
            Job.objects.select_for_update(of=("self",))
            .filter(id__in=list(job_ids))
            .values_list("id", "state", "queue__name")
        )
        if rows:
            Job.objects.filter(id__in=[job_id for job_id, _, _ in rows]).delete()
        queues = {queue for _, _, queue in rows}
        states: dict[str, int] = {}
        for _, state, _ in rows:
            states[state] = states.get(state, 0) + 1
        audit_record(
            actor=actor,
            action=Action.DELETE,
            queue=next(iter(queues)) if len(queues) == 1 else "",
            job_ids=[job_id for job_id, _, _ in rows],
            details={"count": len(rows), "states": states, **_reason(reason)},
        )
    return len(rows)


def job_cancel(*, job_id: uuid.UUID, actor: Actor, reason: str = "") -> Job:
    """Cancel a waiting or active job (an active job's lease is void from then on)."""
    with transaction.atomic():
        job = job_for_update(job_id)
        if job.state not in UNFINISHED:
            raise StateConflict(f"A {job.state} job cannot be cancelled.")
        was = str(job.state)
        job.state = JobState.CANCELLED
        job.finished_at = timezone.now()
        release_lease(job)
        job.save(update_fields=["state", "finished_at", *LEASE_FIELDS])
        audit_record(
            actor=actor,
            action=Action.CANCEL,
            queue=job.queue.name,
            job_ids=[job_id],
            details={"was": was, **_reason(reason)},
        )
    return job


def job_update(*, job_id: uuid.UUID, data: dict[str, Any], actor: Actor) -> Job:
    """Replace the data of a job that has not started yet (and the subject taken from
    it)."""
    with transaction.atomic():
        job = job_for_update(job_id)
        if job.state != JobState.WAITING or job.started_at is not None:
            raise StateConflict("Only a job that has not started yet can be updated.")
        refuse_oversize([(encoded_size(data), "/data")], job.queue)
        refuse_off_schema([(data, "/data")], job.queue)
        refuse_cards_in_data([(find_cards(data, "/data"), "/data")], job.queue.card_allowlist)
        path = job.queue.subject_path
        if job.subject == subject_from(job.data, path):
            # The subject came from the data (not given at push): follow the new data,
            # so erasure finds the job under the subject it is now about.
            refuse_cards_in_subjects([(data, "/data")], job.queue)
            job.subject = subject_from(data, path)
        job.data = data
        job.save(update_fields=["data", "subject"])
        audit_record(actor=actor, action=Action.UPDATE, queue=job.queue.name, job_ids=[job_id])
    return job


def job_retry(*, job_id: uuid.UUID, actor: Actor, reason: str = "") -> Job:
    """Send a failed, cancelled or expired job back to waiting with fresh attempts."""
    retryable = (JobState.FAILED, JobState.CANCELLED, JobState.EXPIRED)
    with transaction.atomic():
        job = job_for_update(job_id)
        if job.state not in retryable:
            raise StateConflict(f"A {job.state} job cannot be retried.")
        was = str(job.state)
        now = timezone.now()
        job.state = JobState.WAITING
        job.attempts = 0
        job.run_at = now
        job.finished_at = None
        job.expires_at = None
        try:
            with transaction.atomic():
                job.save(update_fields=["state", "attempts", "run_at", "finished_at", "expires_at"])
        except IntegrityError as exc:  # job_key_unfinished_uniq
            raise StateConflict(
                "An unfinished job of this queue has the same key; finish or cancel it first."
            ) from exc
        wakeup.notify_ready(job.queue.name)
        audit_record(
            actor=actor,
            action=Action.RETRY,
            queue=job.queue.name,
            job_ids=[job_id],
            details={"was": was, **_reason(reason)},
        )
    return job
