"""What producers and operators do to a job: cancel, update, promote, retry and delete.
Cancelling or deleting an unfinished job cancels its unfinished children, every level
down, and settles what waits for it (queues.dependents); retrying a job retries its
failed children with it (queues.flowretry)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from compliance.audit import Action, Actor, audit_record
from kernel import limits
from kernel.problems import InvalidInput
from security.cards import find_cards

from .. import wakeup
from ..dependents import Settled, jobs_withdrawn, lock_below
from ..errors import QueueNotFound, StateConflict
from ..failures import LEASE_FIELDS, release_lease
from ..flowretry import FlowsRetried, flows_retry, parents_started, retried_fields
from ..jobspec import encoded_size, subject_from
from ..models import FAILED_FOR_GOOD, UNFINISHED, Job, JobDependency, JobState, Queue
from .common import (
    deadlock_retried,
    job_for_update,
    reason_details,
    refuse_cards_in_data,
    refuse_cards_in_subjects,
    refuse_off_schema,
    refuse_oversize,
)


@deadlock_retried
def jobs_delete(*, job_ids: Sequence[uuid.UUID], reason: str, actor: Actor) -> int:
    """Delete jobs in any state, in one transaction and one event (an active job's
    worker then gets 404 on ack). An unfinished one is cancelled first, so what waits
    for it fails instead of waiting for ever, and its unfinished children are cancelled.
    Returns how many were deleted."""
    with transaction.atomic():
        below = lock_below(job_ids)  # children first, as acks lock them
        rows = list(
            Job.objects.select_for_update(of=("self",))
            .filter(id__in=list(job_ids))
            .values_list("id", "state", "queue__name", "watched")
        )
        details = {"count": len(rows), **reason_details(reason)}
        deleting = {row[0] for row in rows}
        below = [(job_id, watched) for job_id, watched in below if job_id not in deleting]
        unfinished = [
            (job_id, watched) for job_id, state, _, watched in rows if state in UNFINISHED
        ]
        settled = Settled()
        if unfinished or below:
            now = timezone.now()
            watched = [job_id for job_id, is_watched in unfinished if is_watched]
            Job.objects.filter(id__in=watched).update(state=JobState.CANCELLED, finished_at=now)
            withdrawn = [job_id for job_id, _ in unfinished]
            settled = jobs_withdrawn(withdrawn, watched=watched, now=now, below=below)
        if rows:
            Job.objects.filter(id__in=[row[0] for row in rows]).delete()
        queues = {row[2] for row in rows}
        states: dict[str, int] = {}
        for _, state, _, _ in rows:
            states[state] = states.get(state, 0) + 1
        audit_record(
            actor=actor,
            action=Action.DELETE,
            queue=next(iter(queues)) if len(queues) == 1 else "",
            job_ids=[*(row[0] for row in rows), *settled.job_ids],
            details={**details, "states": states, **settled.audit()},
        )
    return len(rows)


@deadlock_retried
def job_cancel(*, job_id: uuid.UUID, actor: Actor, reason: str = "") -> Job:
    """Cancel a waiting, waiting-children or active job (an active job's lease is void
    from then on), and its unfinished children, every level down."""
    with transaction.atomic():
        below = lock_below([job_id])  # children first, as acks lock them
        job = job_for_update(job_id)
        if job.state not in UNFINISHED:
            raise StateConflict(f"A {job.state} job cannot be cancelled.")
        details = {"was": str(job.state), **reason_details(reason)}
        now = timezone.now()
        job.state = JobState.CANCELLED
        job.finished_at = now
        release_lease(job)
        job.save(update_fields=["state", "finished_at", *LEASE_FIELDS])
        watched = [job_id] if job.watched else []
        settled = jobs_withdrawn([job_id], watched=watched, now=now, below=below)
        audit_record(
            actor=actor,
            action=Action.CANCEL,
            queue=job.queue.name,
            job_ids=[job_id, *settled.job_ids],
            details={**details, **settled.audit()},
        )
    return job


def _refuse_bad_data(job: Job, data: dict[str, Any]) -> None:
    refuse_oversize([(encoded_size(data), "/data")], job.queue)
    refuse_off_schema([(data, "/data")], job.queue)
    refuse_cards_in_data([(find_cards(data, "/data"), "/data")], job.queue.card_allowlist)


def _replace_data(job: Job, data: dict[str, Any]) -> None:
    path = job.queue.subject_path
    if job.subject == subject_from(job.data, path):
        # The subject came from the data (not given at push): follow the new data, so
        # erasure finds the job under the subject it is now about.
        refuse_cards_in_subjects([(data, "/data")], job.queue)
        job.subject = subject_from(data, path)
    job.data = data


def job_update(
    *,
    job_id: uuid.UUID,
    actor: Actor,
    data: dict[str, Any] | None = None,
    priority: int | None = None,
    run_at: datetime | None = None,
) -> Job:
    """Change a waiting (or delayed) job: its ``priority``, its ``run_at`` (a past time
    makes it ready now: stored as now, so backdating never jumps the jobs, or a group's
    jobs, that were ready before it), and its ``data`` (with the subject taken from it)
    if it has not started yet. One event lists the fields changed, never their values."""
    if data is None and priority is None and run_at is None:
        raise InvalidInput("Give at least one of data, priority and run_at.")
    with transaction.atomic():
        job = job_for_update(job_id)
        if job.state != JobState.WAITING:
            raise StateConflict(f"A {job.state} job cannot be updated; only a waiting one.")
        if data is not None and job.started_at is not None:
            raise StateConflict("The data of a job that has started cannot be replaced.")
        fields: list[str] = []
        if data is not None:
            _refuse_bad_data(job, data)
            _replace_data(job, data)
            fields += ["data", "subject"]
        if priority is not None:
            job.priority = priority
            fields.append("priority")
        now = timezone.now()
        if run_at is not None:
            job.run_at = max(run_at, now)
            fields.append("run_at")
        job.save(update_fields=fields)
        if run_at is not None and run_at <= now:
            wakeup.notify_ready(job.queue.name)
        audit_record(
            actor=actor,
            action=Action.UPDATE,
            queue=job.queue.name,
            job_ids=[job_id],
            details={"fields": [field for field in fields if field != "subject"]},
        )
    return job


def job_promote(*, job_id: uuid.UUID, actor: Actor, reason: str = "") -> Job:
    """Make a delayed job (waiting, ``run_at`` in the future) ready now."""
    with transaction.atomic():
        job = job_for_update(job_id)
        now = timezone.now()
        live = job.expires_at is None or job.expires_at > now
        if job.state != JobState.WAITING or job.run_at <= now or not live:
            raise StateConflict("Only a delayed job can be promoted.")
        was = job.run_at
        job.run_at = now
        job.save(update_fields=["run_at"])
        wakeup.notify_ready(job.queue.name)
        audit_record(
            actor=actor,
            action=Action.PROMOTE,
            queue=job.queue.name,
            job_ids=[job_id],
            details={"run_at_was": was.isoformat(), **reason_details(reason)},
        )
    return job


RETRYABLE = (*FAILED_FOR_GOOD, JobState.COMPLETED)
KEY_HELD = "An unfinished job of this queue has the same key; finish or cancel it first."


def _rerun(job: Job, now: datetime) -> None:
    """Send a completed job (locked) back to waiting, alone: its attempts and error
    history kept, at least one attempt left (max_attempts raised if need be, as Oban's
    retry does), its result kept until a new run replaces it. Its completed children are
    not run again. The lease that completed it goes: its ack is no replay from now on."""
    job.state = JobState.WAITING
    job.run_at = now
    job.finished_at = None
    job.expires_at = None
    job.max_attempts = max(job.max_attempts, job.attempts + 1)
    release_lease(job)
    fields = ["state", "run_at", "finished_at", "expires_at", "max_attempts", *LEASE_FIELDS]
    try:
        with transaction.atomic():
            job.save(update_fields=fields)
    except IntegrityError as exc:  # job_key_unfinished_uniq
        raise StateConflict(KEY_HELD) from exc
    wakeup.notify_ready(job.queue.name)


def _flows_retry(roots: list[uuid.UUID], now: datetime) -> FlowsRetried:
    """flows_retry, its key conflict a StateConflict, waiting pulls woken."""
    try:
        with transaction.atomic():
            retried = flows_retry(roots, now=now)
    except IntegrityError as exc:  # job_key_unfinished_uniq
        raise StateConflict(KEY_HELD) from exc
    for queue in sorted(retried.queues):
        wakeup.notify_ready(queue)
    return retried


@deadlock_retried
def job_retry(*, job_id: uuid.UUID, actor: Actor, reason: str = "") -> Job:
    """Send a failed, cancelled or expired job back to waiting with fresh attempts, with
    its failed, cancelled or expired children (never the completed ones); it waits in
    waiting-children while any is unfinished. A completed job is run again, alone, with
    its attempts kept (``_rerun``). A job whose dependency failed is a conflict: retry
    the dependency first; so is a child whose parent is ready or running
    (flowretry.parents_started), and a job whose key an unfinished job now holds."""
    with transaction.atomic():
        job = job_for_update(job_id)
        if job.state not in RETRYABLE:
            raise StateConflict(f"A {job.state} job cannot be retried.")
        details: dict[str, Any] = {"was": str(job.state), **reason_details(reason)}
        started = parents_started([job_id])
        if started:
            raise StateConflict(
                f"Job {started[job_id]}, this job's parent, no longer waits for it (it is "
                "ready or running); retry the parent once it has finished."
            )
        now = timezone.now()
        if job.state == JobState.COMPLETED:
            _rerun(job, now)
            audit_record(
                actor=actor,
                action=Action.RETRY,
                queue=job.queue.name,
                job_ids=[job_id],
                details=details,
            )
            return job
        retried = _flows_retry([job_id], now)
        if job_id in retried.blocked:
            raise StateConflict(
                f"Job {retried.blocked[job_id]}, which this flow depends on, has not "
                "completed; retry it first."
            )
        for field, value in retried_fields(now).items():
            setattr(job, field, value)
        if job_id in retried.waiting_children:
            job.state = JobState.WAITING_CHILDREN
        if retried.children:
            details["children"] = len(retried.children)
        audit_record(
            actor=actor,
            action=Action.RETRY,
            queue=job.queue.name,
            job_ids=[job_id, *retried.children],
            details=details,
        )
    return job


def _failed_between(
    queue: Queue, since: datetime | None, until: datetime | None, limit: int
) -> list[tuple[uuid.UUID, str | None]]:
    """(id, key) of up to ``limit`` failed jobs of ``queue`` that finished in [since,
    until), oldest first, locked (job_queue_state_idx narrows to the queue's failed)."""
    failed = Job.objects.filter(queue=queue, state=JobState.FAILED)
    if since is not None:
        failed = failed.filter(finished_at__gte=since)
    if until is not None:
        failed = failed.filter(finished_at__lt=until)
    return list(
        failed.order_by("finished_at", "id")
        .select_for_update(skip_locked=True)
        .values_list("id", "key")[:limit]
    )


def _key_free(queue: Queue, rows: list[tuple[uuid.UUID, str | None]]) -> list[uuid.UUID]:
    """The ids of ``rows`` a retry may wake: not one whose key an unfinished job holds
    (job_key_unfinished_uniq), and of several sharing a key only the oldest."""
    keys = {key for _, key in rows if key is not None}
    taken = set(
        Job.objects.filter(queue=queue, state__in=UNFINISHED, key__in=keys).values_list(
            "key", flat=True
        )
    )
    free: list[uuid.UUID] = []
    for job_id, key in rows:
        if key is None or key not in taken:
            free.append(job_id)
            if key is not None:
                taken.add(key)
    return free


@deadlock_retried
def jobs_retry_failed(
    *,
    queue_name: str,
    actor: Actor,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int,
) -> int:
    """Redrive the dead letters: up to ``limit`` failed jobs of a queue that finished in
    [``since``, ``until``), oldest first, back to waiting with fresh attempts (as
    ``job_retry``), in one transaction with one event listing them. A job whose key an
    unfinished job holds stays failed (listed in the event), and so does a child whose
    parent is ready or running (``parent_started``). Returns how many."""
    if not 1 <= limit <= limits.MAX_CLEAN_LIMIT:
        raise ValueError(f"limit must be 1 to {limits.MAX_CLEAN_LIMIT}")
    with transaction.atomic():
        queue = Queue.objects.filter(name=queue_name).first()
        if queue is None:
            raise QueueNotFound()
        rows = _failed_between(queue, since, until, limit)
        started = parents_started([job_id for job_id, _ in rows])
        ids = _key_free(queue, [row for row in rows if row[0] not in started])
        now = timezone.now()
        # Jobs that wait for others (jobdep_job_target_uniq) go through flows_retry.
        waits = set(JobDependency.objects.filter(job_id__in=ids).values_list("job_id", flat=True))
        plain = [job_id for job_id in ids if job_id not in waits]
        if plain:
            try:
                with transaction.atomic():
                    Job.objects.filter(id__in=plain).update(**retried_fields(now))
            except IntegrityError as exc:  # a push took one of the keys meanwhile
                raise StateConflict(KEY_HELD) from exc
            wakeup.notify_ready(queue.name)
        retried = (
            _flows_retry([job_id for job_id in ids if job_id in waits], now)
            if waits
            else FlowsRetried()
        )
        ids = [job_id for job_id in ids if job_id not in retried.blocked]
        woken = set(ids)
        left = [
            job_id
            for job_id, _ in rows
            if job_id not in woken and job_id not in waits and job_id not in started
        ]
        audit_record(
            actor=actor,
            action=Action.RETRY_FAILED,
            queue=queue.name,
            job_ids=[*ids, *retried.children],
            details={
                "count": len(ids),
                "limit": limit,
                "since": since.isoformat() if since else None,
                "until": until.isoformat() if until else None,
                **({"key_held": [str(job_id) for job_id in left]} if left else {}),
                **({"children": len(retried.children)} if retried.children else {}),
                **({"parent_started": [str(job_id) for job_id in started]} if started else {}),
                **(
                    {"dependency_failed": [str(job_id) for job_id in retried.blocked]}
                    if retried.blocked
                    else {}
                ),
            },
        )
    return len(ids)
