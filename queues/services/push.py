"""Push: new jobs, one or a batch, with their keys, checks and the push's audit event."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Field
from django.utils import timezone

from compliance.audit import Action, Actor, audit_event
from compliance.audit.models import AuditEvent
from kernel.problems import (
    ServiceUnavailable,
)
from security.fields import Dumped

from .. import queuecache
from ..bulkinsert import insert_jobs as bulk_insert_jobs
from ..bulkinsert import insert_keyed_job
from ..errors import KeyConflict
from ..jobspec import JobSpec, subject_from
from ..models import UNFINISHED, Job, JobDependency, JobState, Queue
from .common import (
    refuse_cards_in_data,
    refuse_cards_in_subjects,
    refuse_off_schema,
    refuse_oversize,
)
from .pushdeps import Readable, wait_for_dependencies


@dataclass(frozen=True)
class Pushed:
    job: Job
    created: bool


# What a push needs of its queue.
_PUSH_QUEUE_FIELDS = frozenset(
    {"id", "name", "subject_path", "card_allowlist", "max_job_bytes", "json_schema", "grouped"}
)


def _existing_queue(name: str) -> Queue | None:
    """The queue as this process remembers it (queues.queuecache), or None."""
    return queuecache.queue_named(name, _PUSH_QUEUE_FIELDS)


def _default_maker(field: Field[Any, Any]) -> Callable[[], Any]:
    """What makes ``field``'s default for a new job, as ``field.get_default()`` would,
    without its dispatch on every call: the default itself when it is a callable
    (uuid7, dict, timezone.now), else a value no one can change (a string, a number,
    None), made once and handed out again."""
    if field.has_default() and callable(field.default):
        return field.default  # type: ignore[no-any-return]
    value = field.get_default()
    if value is None or type(value) in (str, int, bool):
        return itertools.repeat(value).__next__  # a C-level call that returns it
    return field.get_default  # a mutable default (SealedJSONField's empty list): a copy each time


_DEFAULTS = [(field.attname, _default_maker(field)) for field in Job._meta.concrete_fields]
_QUEUE = Job._meta.get_field("queue")


def _new_job(queue: Queue, spec: JobSpec, now: datetime, owner: str) -> Job:
    """A new job; the fields not set here get the model's defaults. Built positionally:
    Model.__init__ with keywords took 14 us a job, a third of a batch push's time; each
    field's get_default() and the queue's relation descriptor took 11 us more."""
    given: dict[str, Any] = {
        "pushed_by": owner,
        "queue_id": queue.pk,
        "priority": spec.priority,
        "data": spec.data if spec.data_json is None else Dumped(spec.data, spec.data_json),
        "max_attempts": spec.max_attempts,
        "backoff": spec.backoff,
        "run_at": now + timedelta(milliseconds=spec.delay_ms),
        "expires_at": None if spec.ttl_ms is None else now + timedelta(milliseconds=spec.ttl_ms),
        "timeout_ms": spec.timeout_ms,
        "group_key": spec.group,
        "key": spec.key,
        "subject": spec.subject or subject_from(spec.data, queue.subject_path),
        "tags": list(spec.tags),
        "created_at": now,
    }
    values = [given[name] if name in given else make() for name, make in _DEFAULTS]
    job = Job(*values)  # type: ignore[misc]  # positional, in the concrete fields' order
    # The cached relation (queue_id is set above); _state.db is set when it is written.
    _QUEUE.set_cached_value(job, queue)
    return job


# The push's audit event, given what was pushed.
Recorder = Callable[[list[Pushed]], AuditEvent]


def _push_once(
    queue: Queue,
    specs: Sequence[JobSpec],
    now: datetime,
    owner: str,
    record: Recorder,
    readable: Readable,
) -> list[Pushed]:
    keys = {spec.key for spec in specs if spec.key is not None}
    by_key: dict[str, Job] = {}
    if keys:
        by_key = {
            job.key: job
            for job in Job.objects.filter(queue=queue, key__in=keys, state__in=UNFINISHED)
            if job.key is not None
        }
    results: list[Pushed] = []
    new: list[tuple[Job, JobSpec]] = []
    for spec in specs:
        existing = by_key.get(spec.key) if spec.key is not None else None
        if existing is not None:
            if existing.pushed_by != owner:
                raise KeyConflict()
            results.append(Pushed(existing, created=False))
            continue
        job = _new_job(queue, spec, now, owner)
        if spec.key is not None:
            by_key[spec.key] = job
        new.append((job, spec))
        results.append(Pushed(job, created=True))
    dependencies = wait_for_dependencies(new, now, readable)
    new_jobs = [job for job, _ in new]
    ready = any(job.state == JobState.WAITING and job.run_at <= now for job in new_jobs)
    bulk_insert_jobs(new_jobs, event=record(results), wake=queue.name if ready else None)
    if dependencies:
        JobDependency.objects.bulk_create(dependencies)
    return results


KEYED_PUSH_TRIES = 3


def _push_into(
    queue: Queue,
    specs: Sequence[JobSpec],
    now: datetime,
    owner: str,
    record: Recorder,
    readable: Readable = None,
) -> list[Pushed]:
    refuse_oversize([(spec.data_bytes, spec.data_path) for spec in specs], queue)
    refuse_off_schema([(spec.data, spec.data_path) for spec in specs], queue)
    refuse_cards_in_data(
        [(spec.card_findings, spec.data_path) for spec in specs], queue.card_allowlist
    )
    refuse_cards_in_subjects(
        [(spec.data, spec.data_path) for spec in specs if not spec.subject], queue
    )
    if queue.grouped or all(spec.group is None for spec in specs):
        return _push_checked(queue, specs, now, owner, record, readable)
    # The queue's first grouped jobs: from now on its pulls use the grouped claim.
    with transaction.atomic():
        Queue.objects.filter(pk=queue.pk, grouped=False).update(grouped=True)
        queuecache.forget_on_commit()
        queue.grouped = True  # this push's own copy (queues.queuecache)
        return _push_checked(queue, specs, now, owner, record, readable)


def _push_checked(
    queue: Queue,
    specs: Sequence[JobSpec],
    now: datetime,
    owner: str,
    record: Recorder,
    readable: Readable,
) -> list[Pushed]:
    if not any(spec.key is not None for spec in specs):
        if not any(spec.depends_on for spec in specs):
            return _push_once(queue, specs, now, owner, record, readable)
        # The targets' watched mark, the jobs and their JobDependency rows: all or none.
        with transaction.atomic():
            return _push_once(queue, specs, now, owner, record, readable)
    if connection.vendor == "postgresql" and len(specs) == 1 and not specs[0].depends_on:
        # The common case, a new key: one statement, no lookup (queues.bulkinsert).
        job = _new_job(queue, specs[0], now, owner)
        pushed = Pushed(job, created=True)
        wake = queue.name if job.run_at <= now else None
        if insert_keyed_job(job, event=record([pushed]), wake=wake):
            return [pushed]
    if connection.vendor == "postgresql" and len(specs) > 1:
        pushed_fresh = _push_fresh_keys(queue, specs, now, owner, record)
        if pushed_fresh is not None:
            return pushed_fresh
    for _ in range(KEYED_PUSH_TRIES):
        try:
            with transaction.atomic():
                return _push_once(queue, specs, now, owner, record, readable)
        except IntegrityError:
            if queuecache.gone(queue):
                raise  # not a key: the queue (see _push)
            # A concurrent push took one of our keys between lookup and insert; the
            # next look finds it.
            continue
    raise ServiceUnavailable("Concurrent pushes kept taking the same keys; retrying is safe.")


def _push_fresh_keys(
    queue: Queue, specs: Sequence[JobSpec], now: datetime, owner: str, record: Recorder
) -> list[Pushed] | None:
    """PostgreSQL, a keyed batch without depends_on (the client's producer sends every
    push with a new key): the jobs and their event go in as an unkeyed batch does, with
    no lookup first. A key that an unfinished job of the queue holds, or that the batch
    repeats, fails the insert on job_key_unfinished_uniq and writes nothing (its own
    transaction, or a savepoint); then None, and the lookup path answers."""
    if any(spec.depends_on for spec in specs):
        return None
    jobs = [_new_job(queue, spec, now, owner) for spec in specs]
    results = [Pushed(job, created=True) for job in jobs]
    ready = any(job.state == JobState.WAITING and job.run_at <= now for job in jobs)
    try:
        bulk_insert_jobs(jobs, event=record(results), wake=queue.name if ready else None)
    except IntegrityError:
        if queuecache.gone(queue):
            raise  # not a key: the queue (see _push)
        return None
    return results


def _push(
    queue_name: str,
    specs: Sequence[JobSpec],
    owner: str,
    record: Callable[[list[Pushed], dict[str, Any]], AuditEvent],
    readable: Readable,
) -> list[Pushed]:
    """Push into a queue, created on first push. Into an existing queue without keys,
    the jobs and their event are one statement (queues.bulkinsert); a new queue is
    created in the same transaction as its first jobs, so a refused first push leaves
    no queue behind."""
    now = timezone.now()
    queue = _existing_queue(queue_name)
    if queue is not None:
        try:
            return _push_into(
                queue, specs, now, owner, lambda results: record(results, {}), readable
            )
        except IntegrityError:
            # Remembered by this process, deleted since (on another app server): looked
            # up afresh below, and created again like any queue on its first push.
            if not queuecache.gone(queue):
                raise
    with transaction.atomic():
        queue, created = Queue.objects.get_or_create(name=queue_name)
        about = {"queue_created": True} if created else {}
        return _push_into(
            queue, specs, now, owner, lambda results: record(results, about), readable
        )


def _held_back(results: list[Pushed]) -> dict[str, int]:
    """Audit details: new jobs that wait for their depends_on, or failed at once since
    one of them had failed (nothing when there are none)."""
    states = [p.job.state for p in results if p.created]
    counts = {
        "waiting_children": states.count(JobState.WAITING_CHILDREN),
        "dependency_failed": states.count(JobState.FAILED),
    }
    return {name: count for name, count in counts.items() if count}


def jobs_push(
    *,
    queue_name: str,
    specs: Sequence[JobSpec],
    owner: str,
    actor: Actor,
    readable: Readable = None,
) -> list[Pushed]:
    """Add jobs to a queue (created on first push), all or nothing, in input order.

    A spec whose ``key`` names an unfinished job of the queue that ``owner`` pushed
    returns that job instead (``created=False``, its ``depends_on`` ignored); so does a
    repeat of a key earlier in the same batch. A key held by someone else's unfinished
    job is a KeyConflict. A new job's ``depends_on`` must name jobs in queues
    ``readable`` accepts (see pushdeps.wait_for_dependencies). One audit event lists every job,
    written with them."""

    def record(results: list[Pushed], about_queue: dict[str, Any]) -> AuditEvent:
        return audit_event(
            actor=actor,
            action=Action.PUSH,
            status=201,
            queue=queue_name,
            job_ids=[pushed.job.id for pushed in results],
            details={
                "count": len(results),
                "created": sum(p.created for p in results),
                **_held_back(results),
                **about_queue,
            },
        )

    return _push(queue_name, specs, owner, record, readable)


def job_push(
    *, queue_name: str, spec: JobSpec, owner: str, actor: Actor, readable: Readable = None
) -> Pushed:
    """Push one job: 201 when created, 200 with the unfinished job of ``owner`` that has
    its key (a KeyConflict if someone else's holds it; its depends_on is then ignored)."""

    def record(results: list[Pushed], about_queue: dict[str, Any]) -> AuditEvent:
        [pushed] = results
        return audit_event(
            actor=actor,
            action=Action.PUSH,
            status=201 if pushed.created else 200,
            queue=queue_name,
            job_ids=[pushed.job.id],
            details={"created": pushed.created, **_held_back(results), **about_queue},
        )

    [pushed] = _push(queue_name, [spec], owner, record, readable)
    return pushed
