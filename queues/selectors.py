"""Reads of the queue engine, and the job admin's reads of what a staff user sees
(the tags its filter offers, an error search, a job's audit trail)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from django.db import connection, models
from django.db.models import Count, Min, Q, QuerySet
from django.utils import timezone

from compliance.audit.models import AuditEvent
from compliance.audit.selectors import audit_events_naming_job
from kernel.problems import InvalidInput

from .errors import JobNotFound, QueueNotFound, ScheduleNotFound, WebhookNotFound
from .models import (
    FINISHED,
    DependencyKind,
    Job,
    JobDependency,
    JobState,
    Queue,
    Schedule,
    Webhook,
)

# Reported states: the stored ones, plus "delayed" for a waiting job whose run_at is in
# the future. A waiting job past its ttl is reported "expired" before the sweeper
# records it as such. "waiting-children": held back until the jobs it waits for (its
# children, its depends_on) have finished.
DELAYED = "delayed"
REPORTED_STATES = (
    JobState.WAITING,
    DELAYED,
    JobState.WAITING_CHILDREN,
    JobState.ACTIVE,
    JobState.COMPLETED,
    JobState.FAILED,
    JobState.CANCELLED,
    JobState.EXPIRED,
)
# Error texts are encrypted, so a search in them opens the newest jobs that have one,
# at most this many per search; the admin's search help says so.
ERROR_SEARCH_WINDOW = 5000


@cache
def _queue_lookup(fields: frozenset[str]) -> tuple[list[models.Field[Any, Any]], str]:
    columns = [field for field in Queue._meta.concrete_fields if field.attname in fields]
    names = ", ".join(connection.ops.quote_name(field.column) for field in columns)
    return columns, f"SELECT {names} FROM queues_queue WHERE name = %s"  # noqa: S608


def queue_row(name: str, fields: frozenset[str]) -> tuple[list[str], list[Any]] | None:
    """The queue named ``name`` as (attnames, values) of ``fields``, or None; for the hot
    paths, as one constant statement: the ORM spent longer compiling this lookup than
    the database spent running it. ``Queue.from_db`` makes a Queue of it."""
    columns, sql = _queue_lookup(fields)
    with connection.cursor() as cursor:
        cursor.execute(sql, [name])
        row = cursor.fetchone()
    if row is None:
        return None
    # JSON columns come back as text (no expression: the converter does not use it).
    values = [
        field.from_db_value(value, None, connection)  # type: ignore[arg-type]
        if isinstance(field, models.JSONField)
        else value
        for field, value in zip(columns, row, strict=True)
    ]
    # Model.from_db takes the values in the model's field order, as columns has them.
    return [field.attname for field in columns], values


def queue_by_name(name: str, fields: frozenset[str]) -> Queue | None:
    """The queue named ``name`` with only ``fields`` loaded (the rest deferred), or
    None, read now (queues.queuecache remembers it for the hot paths)."""
    row = queue_row(name, fields)
    return None if row is None else Queue.from_db(connection.alias, *row)


def reported_state(job: Job, now: datetime) -> str:
    if job.state == JobState.WAITING:
        if job.expires_at is not None and job.expires_at <= now:
            return JobState.EXPIRED
        if job.run_at > now:
            return DELAYED
    return str(job.state)


def reported_finished(job: Job, now: datetime) -> bool:
    """Whether the job has finished as reported at ``now``: completed, failed, cancelled
    or expired (a waiting job past its ttl included)."""
    return reported_state(job, now) in FINISHED


def _state_filter(state: str, now: datetime) -> Q:
    live = Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    if state == JobState.WAITING:
        return Q(state=JobState.WAITING, run_at__lte=now) & live
    if state == DELAYED:
        return Q(state=JobState.WAITING, run_at__gt=now) & live
    if state == JobState.EXPIRED:
        return Q(state=JobState.EXPIRED) | Q(state=JobState.WAITING, expires_at__lte=now)
    return Q(state=state)


def jobs_in_state(*, jobs: QuerySet[Job], state: str) -> QuerySet[Job]:
    """``jobs`` in one reported state: "delayed" and "waiting" apart, "expired" with
    the waiting jobs past their ttl (the admin's state filter)."""
    return jobs.filter(_state_filter(state, timezone.now()))


def queue_find(*, name: str) -> Queue | None:
    return Queue.objects.filter(name=name).first()


def queue_get(*, name: str) -> Queue:
    queue = queue_find(name=name)
    if queue is None:
        raise QueueNotFound()
    return queue


def queues_list() -> list[Queue]:
    return list(Queue.objects.order_by("name"))


def job_get(*, job_id: uuid.UUID) -> Job:
    job = Job.objects.select_related("queue").filter(id=job_id).first()
    if job is None:
        raise JobNotFound()
    return job


def job_queue_name(*, job_id: uuid.UUID) -> str:
    name = Job.objects.filter(id=job_id).values_list("queue__name", flat=True).first()
    if name is None:
        raise JobNotFound()
    return name


def jobs_queue_names(*, job_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    return dict(Job.objects.filter(id__in=list(job_ids)).values_list("id", "queue__name"))


def job_children(*, job_id: uuid.UUID) -> list[Job]:
    """A flow parent's children (kind ``child``), in the order they were pushed (the
    rows' ids); jobdep_job_target_uniq starts with the parent."""
    rows = (
        JobDependency.objects.filter(job_id=job_id, kind=DependencyKind.CHILD)
        .select_related("depends_on__queue")
        .order_by("id")
    )
    return [row.depends_on for row in rows]


def job_links(
    *, job_id: uuid.UUID, readable: Callable[[str], bool]
) -> tuple[uuid.UUID | None, list[uuid.UUID]]:
    """The job's parent in a flow (None outside one) and the ids of its ``depends_on``,
    those in queues ``readable`` accepts only (a link to a job the caller may not read
    would name it), in one query (jobdep_job_target_uniq and jobdep_target_idx)."""
    rows = (
        JobDependency.objects.filter(
            Q(job_id=job_id, kind=DependencyKind.DEPENDENCY)
            | Q(depends_on_id=job_id, kind=DependencyKind.CHILD)
        )
        .order_by("id")
        .values_list(
            "job_id", "depends_on_id", "kind", "job__queue__name", "depends_on__queue__name"
        )
    )
    parent: uuid.UUID | None = None
    depends_on: list[uuid.UUID] = []
    for waiter, target, kind, waiter_queue, target_queue in rows:
        if kind == DependencyKind.CHILD and readable(waiter_queue):
            parent = waiter
        elif kind == DependencyKind.DEPENDENCY and readable(target_queue):
            depends_on.append(target)
    return parent, depends_on


def jobs_for_queue(
    *, queue: Queue, state: str | None, after: uuid.UUID | None, limit: int
) -> list[Job]:
    """A page of a queue's jobs, oldest first (ids are time-ordered): keyset pagination
    on id, so pages stay stable while jobs are added. job_queue_state_idx."""
    if state is not None and state not in REPORTED_STATES:
        raise InvalidInput("Unknown state.")
    jobs = Job.objects.filter(queue=queue).select_related("queue")
    if state is not None:
        jobs = jobs.filter(_state_filter(state, timezone.now()))
    if after is not None:
        jobs = jobs.filter(id__gt=after)
    return list(jobs.order_by("id")[:limit])


def queue_stats(*, queue: Queue) -> dict[str, Any]:
    """Counts per reported state and the age of the oldest ready job, in one query."""
    now = timezone.now()
    aggregates: dict[str, Any] = {
        state: Count("id", filter=_state_filter(state, now)) for state in REPORTED_STATES
    }
    aggregates["oldest_ready"] = Min("run_at", filter=_state_filter(JobState.WAITING, now))
    row = Job.objects.filter(queue=queue).aggregate(**aggregates)
    oldest = row.pop("oldest_ready")
    return {
        "counts": row,
        "oldest_waiting_age_seconds": (now - oldest).total_seconds() if oldest else None,
    }


# -- schedules -------------------------------------------------------------------------


def schedules_for_queue(*, queue: Queue) -> list[Schedule]:
    return list(Schedule.objects.filter(queue=queue).select_related("queue").order_by("name"))


def schedule_get(*, queue_name: str, name: str) -> Schedule:
    schedule: Schedule | None = (
        Schedule.objects.select_related("queue").filter(queue__name=queue_name, name=name).first()
    )
    if schedule is None:
        raise ScheduleNotFound()
    return schedule


def webhooks_for_queue(*, queue_name: str) -> list[Webhook]:
    return list(
        Webhook.objects.filter(queue__name=queue_name).select_related("queue").order_by("name")
    )


def webhook_get(*, queue_name: str, name: str) -> Webhook:
    webhook: Webhook | None = (
        Webhook.objects.select_related("queue").filter(queue__name=queue_name, name=name).first()
    )
    if webhook is None:
        raise WebhookNotFound()
    return webhook


# -- the job admin's reads -------------------------------------------------------------


def job_tags(*, jobs: QuerySet[Job]) -> list[str]:
    """The first 50 tags, sorted, of the newest 2000 of ``jobs``: the ones a staff user
    may see, as tags can name people."""
    tags: set[str] = set()
    newest = jobs.select_related(None).order_by("-id").values_list("tags", flat=True)[:2000]
    for row in newest:
        tags.update(str(tag) for tag in row or ())
    return sorted(tags)[:50]


def is_job_id(term: str) -> bool:
    try:
        uuid.UUID(term)
    except ValueError:
        return False
    return True


def jobs_named(*, jobs: QuerySet[Job], term: str) -> list[uuid.UUID]:
    """Ids of ``jobs`` whose id, idempotency key or subject is exactly ``term``: three
    lookups, each by its own index where there is one (the id; the subject), rather
    than one OR that no index serves. Keys have no index of their own outside the
    unfinished-key uniqueness, so finding one is a scan of its column."""
    ids = jobs.select_related(None).order_by().values_list("id", flat=True)
    found: list[uuid.UUID] = []
    if is_job_id(term):
        found += ids.filter(id=uuid.UUID(term))
    found += ids.filter(subject=term)
    found += ids.filter(key=term)
    return found


def jobs_with_error_containing(
    *, jobs: QuerySet[Job], term: str, queues: QuerySet[Queue]
) -> list[uuid.UUID]:
    """Ids of the jobs, among the newest ERROR_SEARCH_WINDOW of ``jobs`` in ``queues``
    that have an error, whose error text holds ``term`` (lower case): the texts are
    encrypted, so they are compared here, decrypted, not in the database."""
    with_error = (
        jobs.filter(error__isnull=False, queue__in=queues.values("pk"))
        .select_related(None)
        .order_by("-id")
        .only("id", "error")[:ERROR_SEARCH_WINDOW]
    )
    return [job.id for job in with_error if term in job.error.lower()]


def job_audit_events(*, job: Job) -> list[AuditEvent]:
    """The first 100 audit events naming ``job``, oldest first. Events from before a
    minute ahead of the job's creation are not searched (none names it): the index on
    created_at narrows the scan to the job's lifetime."""
    return list(
        AuditEvent.objects.filter(created_at__gte=job.created_at - timedelta(minutes=1))
        .filter(audit_events_naming_job(job_id=str(job.id)))
        .order_by("id")[:100]
    )
