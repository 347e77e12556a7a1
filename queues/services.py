"""Writes of the queue engine. Plain functions, keyword-only arguments; each runs in one
transaction, joining the caller's without a savepoint (so the API commits the change and
its audit row together, and an error rolls back both). Lease checks are conditional
writes: a stale lease changes nothing."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from . import claim, wakeup
from .backoff import retry_delay_ms
from .bulkinsert import insert_jobs as bulk_insert_jobs
from .errors import FieldError, JobNotFound, LeaseConflict, StateConflict
from .jobspec import JobSpec, subject_from
from .models import UNFINISHED, Job, JobState, Queue

MAX_ERROR_HISTORY = 50
MAX_ERROR_LENGTH = 10_000
LEASE_EXPIRED = "lease expired"


@dataclass(frozen=True)
class Pushed:
    job: Job
    created: bool


@dataclass(frozen=True)
class AckSpec:
    job_id: uuid.UUID
    lease_id: uuid.UUID
    result: Any = None


def _queue_for_push(name: str) -> Queue:
    # only(): the push path needs the id and subject_path, not the whole row.
    queue = Queue.objects.only("id", "name", "subject_path").filter(name=name).first()
    if queue is None:
        queue, _ = Queue.objects.get_or_create(name=name)
    return queue


def _new_job(queue: Queue, spec: JobSpec, now: datetime) -> Job:
    return Job(
        queue=queue,
        priority=spec.priority,
        data=spec.data,
        max_attempts=spec.max_attempts,
        backoff=spec.backoff,
        run_at=now + timedelta(milliseconds=spec.delay_ms),
        expires_at=None if spec.ttl_ms is None else now + timedelta(milliseconds=spec.ttl_ms),
        key=spec.key,
        subject=spec.subject or subject_from(spec.data, queue.subject_path),
        tags=list(spec.tags),
        created_at=now,
    )


def _push_once(queue: Queue, specs: Sequence[JobSpec], now: datetime) -> list[Pushed]:
    keys = {spec.key for spec in specs if spec.key is not None}
    by_key: dict[str, Job] = {}
    if keys:
        by_key = {
            job.key: job
            for job in Job.objects.filter(queue=queue, key__in=keys, state__in=UNFINISHED)
            if job.key is not None
        }
    results: list[Pushed] = []
    new_jobs: list[Job] = []
    for spec in specs:
        existing = by_key.get(spec.key) if spec.key is not None else None
        if existing is not None:
            results.append(Pushed(existing, created=False))
            continue
        job = _new_job(queue, spec, now)
        if spec.key is not None:
            by_key[spec.key] = job
        new_jobs.append(job)
        results.append(Pushed(job, created=True))
    bulk_insert_jobs(new_jobs)
    return results


def jobs_push(*, queue_name: str, specs: Sequence[JobSpec]) -> list[Pushed]:
    """Add jobs to a queue (created on first push), all or nothing, in input order.

    A spec whose ``key`` names an unfinished job of the queue returns that job instead
    (``created=False``); so does a repeat of a key earlier in the same batch."""
    now = timezone.now()
    with transaction.atomic(savepoint=False):
        queue = _queue_for_push(queue_name)
        if not any(spec.key is not None for spec in specs):
            results = _push_once(queue, specs, now)
        else:
            try:
                with transaction.atomic():
                    results = _push_once(queue, specs, now)
            except IntegrityError:
                # A concurrent push took one of our keys between lookup and insert; the
                # second look finds it.
                results = _push_once(queue, specs, now)
        if any(pushed.created and pushed.job.run_at <= now for pushed in results):
            wakeup.notify_ready(queue_name)
    return results


def job_push(*, queue_name: str, spec: JobSpec) -> Pushed:
    return jobs_push(queue_name=queue_name, specs=[spec])[0]


def _release_lease(job: Job) -> None:
    job.lease_id = None
    job.lease_owner = ""
    job.lease_expires_at = None


_LEASE_FIELDS = ["lease_id", "lease_owner", "lease_expires_at"]


def _record_failure(job: Job, message: str, *, now: datetime, retry: bool, delay_ms: int) -> None:
    """Count a failed attempt: history entry, then back to waiting or to failed."""
    message = message[:MAX_ERROR_LENGTH]
    entry = {"attempt": job.attempts, "error": message, "at": now.isoformat()}
    job.errors = [*job.errors, entry][-MAX_ERROR_HISTORY:]
    job.error = message
    _release_lease(job)
    if retry and job.attempts < job.max_attempts:
        job.state = JobState.WAITING
        job.run_at = now + timedelta(milliseconds=delay_ms)
    else:
        job.state = JobState.FAILED
        job.finished_at = now


_FAILURE_FIELDS = ["errors", "error", "state", "run_at", "finished_at", *_LEASE_FIELDS]


def leases_requeue_expired(*, queue_id: int | None = None, limit: int = 500) -> int:
    """Return jobs whose lease ran out to waiting, each as a failed attempt ("lease
    expired"), or to failed when that was the last attempt. No backoff: the lease
    itself was the wait. Called by every pull (for its queue) and by the sweeper."""
    now = timezone.now()
    with transaction.atomic(savepoint=False):
        # job_lease_idx: active jobs by lease expiry.
        expired = Job.objects.filter(state=JobState.ACTIVE, lease_expires_at__lte=now)
        if queue_id is not None:
            expired = expired.filter(queue_id=queue_id)
        jobs = list(
            expired.select_for_update(skip_locked=True).order_by("lease_expires_at")[:limit]
        )
        for job in jobs:
            _record_failure(job, LEASE_EXPIRED, now=now, retry=True, delay_ms=0)
        Job.objects.bulk_update(jobs, _FAILURE_FIELDS)
    return len(jobs)


def jobs_expire_ttl(*, limit: int = 5000) -> int:
    """Mark waiting jobs whose ttl ran out as expired (pull already skips them)."""
    now = timezone.now()
    with transaction.atomic(savepoint=False):
        ids = list(
            Job.objects.filter(state=JobState.WAITING, expires_at__lte=now)
            .select_for_update(skip_locked=True)
            .values_list("id", flat=True)[:limit]
        )
        return Job.objects.filter(id__in=ids, state=JobState.WAITING).update(
            state=JobState.EXPIRED, finished_at=now
        )


def jobs_pull(*, queue: Queue, count: int, lease_seconds: int, owner: str) -> list[Job]:
    """Lease up to ``count`` ready jobs of ``queue`` to ``owner``. A paused queue hands
    out nothing. Expired leases of the queue are recovered first."""
    if queue.paused:
        return []
    leases_requeue_expired(queue_id=queue.pk)
    with transaction.atomic(savepoint=False):
        return claim.claim(
            queue_id=queue.pk,
            count=count,
            lease_seconds=lease_seconds,
            owner=owner,
            now=timezone.now(),
        )


def _completion(now: datetime) -> dict[str, Any]:
    return {
        "state": JobState.COMPLETED,
        "finished_at": now,
        "lease_id": None,
        "lease_owner": "",
        "lease_expires_at": None,
    }


def _live_lease(job_id: uuid.UUID, lease_id: uuid.UUID, now: datetime) -> Any:
    return Job.objects.filter(
        id=job_id, state=JobState.ACTIVE, lease_id=lease_id, lease_expires_at__gt=now
    )


STALE_LEASE = "The lease is not the job's current lease, or it has expired."


def job_ack(*, job_id: uuid.UUID, lease_id: uuid.UUID, result: Any = None) -> None:
    now = timezone.now()
    if not _live_lease(job_id, lease_id, now).update(result=result, **_completion(now)):
        raise LeaseConflict(STALE_LEASE)


def jobs_ack(*, acks: Sequence[AckSpec]) -> None:
    """Complete many jobs, all or nothing: one stale lease and none is acked, and the
    error names each offending item."""
    now = timezone.now()
    ids = [ack.job_id for ack in acks]
    with transaction.atomic(savepoint=False):
        leases = dict(
            Job.objects.select_for_update()
            .filter(id__in=ids, state=JobState.ACTIVE, lease_expires_at__gt=now)
            .order_by("id")
            .values_list("id", "lease_id")
        )
        stale = [
            FieldError(f"/jobs/{index}/lease_id", "is not the job's current lease")
            for index, ack in enumerate(acks)
            if leases.get(ack.job_id) != ack.lease_id
        ]
        if stale:
            raise LeaseConflict(STALE_LEASE, errors=stale)
        Job.objects.filter(id__in=ids).update(**_completion(now))
        with_result = [
            Job(id=ack.job_id, result=ack.result) for ack in acks if ack.result is not None
        ]
        if with_result:
            Job.objects.bulk_update(with_result, ["result"])


def _leased_for_update(job_id: uuid.UUID, lease_id: uuid.UUID, now: datetime) -> Job:
    job: Job | None = _live_lease(job_id, lease_id, now).select_for_update().first()
    if job is None:
        raise LeaseConflict(STALE_LEASE)
    return job


def job_fail(
    *,
    job_id: uuid.UUID,
    lease_id: uuid.UUID,
    error: str,
    retry: bool = True,
    rand: Callable[[], float] = random.random,
) -> Job:
    """Record a failed attempt; retry after the job's backoff, or go to ``failed`` when
    attempts are used up or the worker says ``retry: false``."""
    now = timezone.now()
    with transaction.atomic(savepoint=False):
        job = _leased_for_update(job_id, lease_id, now)
        delay = retry_delay_ms(job.backoff, job.attempts, rand=rand)
        _record_failure(job, error, now=now, retry=retry, delay_ms=delay)
        job.save(update_fields=_FAILURE_FIELDS)
    return job


def job_progress(
    *, job_id: uuid.UUID, lease_id: uuid.UUID, progress: int, message: str = ""
) -> Job:
    """Report progress; also a heartbeat that extends the lease by its length."""
    now = timezone.now()
    with transaction.atomic(savepoint=False):
        job = _leased_for_update(job_id, lease_id, now)
        job.progress = progress
        job.progress_message = message
        job.lease_expires_at = now + timedelta(seconds=job.lease_seconds)
        job.save(update_fields=["progress", "progress_message", "lease_expires_at"])
    return job


def _for_update(job_id: uuid.UUID) -> Job:
    job: Job | None = (
        Job.objects.select_for_update().select_related("queue").filter(id=job_id).first()
    )
    if job is None:  # deleted since the caller looked it up
        raise JobNotFound()
    return job


def job_cancel(*, job_id: uuid.UUID) -> Job:
    """Cancel a waiting or active job (an active job's lease is void from then on)."""
    with transaction.atomic(savepoint=False):
        job = _for_update(job_id)
        if job.state not in UNFINISHED:
            raise StateConflict(f"A {job.state} job cannot be cancelled.")
        job.state = JobState.CANCELLED
        job.finished_at = timezone.now()
        _release_lease(job)
        job.save(update_fields=["state", "finished_at", *_LEASE_FIELDS])
    return job


def job_update(*, job_id: uuid.UUID, data: dict[str, Any]) -> Job:
    """Replace the data of a job that has not started yet (and the subject taken from
    it)."""
    with transaction.atomic(savepoint=False):
        job = _for_update(job_id)
        if job.state != JobState.WAITING or job.started_at is not None:
            raise StateConflict("Only a job that has not started yet can be updated.")
        path = job.queue.subject_path
        if job.subject == subject_from(job.data, path):
            # The subject came from the data (not given at push): follow the new data,
            # so erasure finds the job under the subject it is now about.
            job.subject = subject_from(data, path)
        job.data = data
        job.save(update_fields=["data", "subject"])
    return job


def job_retry(*, job_id: uuid.UUID) -> Job:
    """Send a failed, cancelled or expired job back to waiting with fresh attempts."""
    retryable = (JobState.FAILED, JobState.CANCELLED, JobState.EXPIRED)
    with transaction.atomic(savepoint=False):
        job = _for_update(job_id)
        if job.state not in retryable:
            raise StateConflict(f"A {job.state} job cannot be retried.")
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
    return job


def queue_set_paused(*, queue: Queue, paused: bool) -> Queue:
    queue.paused = paused
    queue.save(update_fields=["paused"])
    return queue
