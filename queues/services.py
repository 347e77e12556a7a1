"""Writes of the queue engine. Plain functions, keyword-only arguments.

Every service that changes state takes the ``actor`` who asked and records its audit
event inside its own atomic block, so the change and its event commit together, or
neither does, wherever the call comes from (the API, the admin, a command). The API
calls a service outside any transaction, so its block is the transaction itself (no
savepoint); the admin and tests call it inside one, where it becomes a savepoint and a
failure rolls back only the service's work. Services never call one another. Lease
checks are conditional writes: a stale lease changes nothing. Pull and the recovery of
expired leases live in queues.pulling."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from compliance.audit import Action, Actor, audit_event, audit_record
from compliance.models import AuditEvent
from flashq_project import limits
from flashq_project.problems import (
    CardNumberDetected,
    FieldError,
    InvalidInput,
    PayloadTooLarge,
    ServiceUnavailable,
    pointer_segment,
)
from security.cards import CardFinding, card_problem, find_cards, find_cards_in_text, not_allowed
from security.encryption import keyring
from security.fields import Sealed, Stored, bulk_update_sealed
from security.jobschema import (
    SchemaValidationFailed,
    schema_errors,
    schema_problem,
    validator_for,
)

from . import selectors, wakeup
from .backoff import retry_delay_ms
from .bulkinsert import insert_jobs as bulk_insert_jobs
from .errors import JobNotFound, KeyConflict, LeaseConflict, QueueNotFound, StateConflict
from .jobspec import JobSpec, encoded_size, payload_shape, subject_from
from .models import UNFINISHED, Job, JobState, Queue

STALE_LEASE = "The lease is not the job's current lease, it has expired, or another token holds it."


@dataclass(frozen=True)
class Pushed:
    job: Job
    created: bool


@dataclass(frozen=True)
class AckSpec:
    job_id: uuid.UUID
    lease_id: uuid.UUID
    result: Any = None


# -- push ------------------------------------------------------------------------------


# What a push needs of its queue.
_PUSH_QUEUE_FIELDS = frozenset(
    {"id", "name", "subject_path", "card_allowlist", "max_job_bytes", "json_schema"}
)


def _existing_queue(name: str) -> Queue | None:
    return selectors.queue_by_name(name, _PUSH_QUEUE_FIELDS)


_JOB_FIELDS = Job._meta.concrete_fields


def _new_job(queue: Queue, spec: JobSpec, now: datetime, owner: str) -> Job:
    """A new job; the fields not set here get the model's defaults. Built positionally:
    Model.__init__ with keywords took 14 us a job, a third of a batch push's time."""
    given: dict[str, Any] = {
        "pushed_by": owner,
        "queue_id": queue.pk,
        "priority": spec.priority,
        "data": spec.data,
        "max_attempts": spec.max_attempts,
        "backoff": spec.backoff,
        "run_at": now + timedelta(milliseconds=spec.delay_ms),
        "expires_at": None if spec.ttl_ms is None else now + timedelta(milliseconds=spec.ttl_ms),
        "key": spec.key,
        "subject": spec.subject or subject_from(spec.data, queue.subject_path),
        "tags": list(spec.tags),
        "created_at": now,
    }
    values = [
        given[field.attname] if field.attname in given else field.get_default()
        for field in _JOB_FIELDS
    ]
    job = Job(*values)  # type: ignore[misc]  # positional, in the concrete fields' order
    job.queue = queue  # the cached relation, as Job(queue=queue) would set it
    return job


# The push's audit event, given what was pushed.
Recorder = Callable[[list[Pushed]], AuditEvent]


def _push_once(
    queue: Queue, specs: Sequence[JobSpec], now: datetime, owner: str, record: Recorder
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
    new_jobs: list[Job] = []
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
        new_jobs.append(job)
        results.append(Pushed(job, created=True))
    ready = any(job.run_at <= now for job in new_jobs)
    bulk_insert_jobs(new_jobs, event=record(results), wake=queue.name if ready else None)
    return results


KEYED_PUSH_TRIES = 3


def _push_into(
    queue: Queue, specs: Sequence[JobSpec], now: datetime, owner: str, record: Recorder
) -> list[Pushed]:
    _refuse_oversize([(spec.data_bytes, spec.data_path) for spec in specs], queue)
    _refuse_off_schema([(spec.data, spec.data_path) for spec in specs], queue)
    _refuse_cards_in_data(
        [(spec.card_findings, spec.data_path) for spec in specs], queue.card_allowlist
    )
    _refuse_cards_in_subjects(
        [(spec.data, spec.data_path) for spec in specs if not spec.subject], queue
    )
    if not any(spec.key is not None for spec in specs):
        return _push_once(queue, specs, now, owner, record)
    for _ in range(KEYED_PUSH_TRIES):
        try:
            with transaction.atomic():
                return _push_once(queue, specs, now, owner, record)
        except IntegrityError:
            # A concurrent push took one of our keys between lookup and insert; the
            # next look finds it.
            continue
    raise ServiceUnavailable("Concurrent pushes kept taking the same keys; retrying is safe.")


def _push(
    queue_name: str,
    specs: Sequence[JobSpec],
    owner: str,
    record: Callable[[list[Pushed], dict[str, Any]], AuditEvent],
) -> list[Pushed]:
    """Push into a queue, created on first push. Into an existing queue without keys,
    the jobs and their event are one statement (queues.bulkinsert); a new queue is
    created in the same transaction as its first jobs, so a refused first push leaves
    no queue behind."""
    now = timezone.now()
    queue = _existing_queue(queue_name)
    if queue is not None:
        return _push_into(queue, specs, now, owner, lambda results: record(results, {}))
    with transaction.atomic():
        queue, created = Queue.objects.get_or_create(name=queue_name)
        about = {"queue_created": True} if created else {}
        return _push_into(queue, specs, now, owner, lambda results: record(results, about))


def jobs_push(
    *, queue_name: str, specs: Sequence[JobSpec], owner: str, actor: Actor
) -> list[Pushed]:
    """Add jobs to a queue (created on first push), all or nothing, in input order.

    A spec whose ``key`` names an unfinished job of the queue that ``owner`` pushed
    returns that job instead (``created=False``); so does a repeat of a key earlier in
    the same batch. A key held by someone else's unfinished job is a KeyConflict. One
    audit event lists every job, written with them."""

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
                **about_queue,
            },
        )

    return _push(queue_name, specs, owner, record)


def job_push(*, queue_name: str, spec: JobSpec, owner: str, actor: Actor) -> Pushed:
    """Push one job: 201 when created, 200 with the unfinished job of ``owner`` that has
    its key (a KeyConflict if someone else's holds it)."""

    def record(results: list[Pushed], about_queue: dict[str, Any]) -> AuditEvent:
        [pushed] = results
        return audit_event(
            actor=actor,
            action=Action.PUSH,
            status=201 if pushed.created else 200,
            queue=queue_name,
            job_ids=[pushed.job.id],
            details={"created": pushed.created, **about_queue},
        )

    [pushed] = _push(queue_name, [spec], owner, record)
    return pushed


# -- what workers report -----------------------------------------------------------------


def release_lease(job: Job) -> None:
    job.lease_id = None
    job.lease_owner = ""
    job.lease_expires_at = None


LEASE_FIELDS = ["lease_id", "lease_owner", "lease_expires_at"]
FAILURE_FIELDS = ["errors", "error", "error_code", "state", "run_at", "finished_at", *LEASE_FIELDS]


def record_failure(
    job: Job, message: str, *, now: datetime, retry: bool, delay_ms: int, code: str = ""
) -> None:
    """Count a failed attempt: history entry (with its code), then back to waiting or to
    failed."""
    message = message[: limits.MAX_ERROR_LENGTH]
    entry = {"attempt": job.attempts, "error": message, "code": code, "at": now.isoformat()}
    job.errors = [*job.errors, entry][-limits.MAX_ERROR_HISTORY :]
    job.error = message
    job.error_code = code
    release_lease(job)
    if retry and job.attempts < job.max_attempts:
        job.state = JobState.WAITING
        job.run_at = now + timedelta(milliseconds=delay_ms)
    else:
        job.state = JobState.FAILED
        job.finished_at = now


def _completion(now: datetime) -> dict[str, Any]:
    return {
        "state": JobState.COMPLETED,
        "finished_at": now,
        "lease_id": None,
        "lease_owner": "",
        "lease_expires_at": None,
    }


def _live_lease(job_id: uuid.UUID, lease_id: uuid.UUID, owner: str, now: datetime) -> Any:
    """The job, if ``lease_id`` is its current, unexpired lease and ``owner`` (a token
    family) claimed it: the right lease id from anyone else is still a conflict."""
    return Job.objects.filter(
        id=job_id,
        state=JobState.ACTIVE,
        lease_id=lease_id,
        lease_owner=owner,
        lease_expires_at__gt=now,
    )


def _check_result_sizes(results: Sequence[tuple[str, Any]]) -> None:
    """A result is stored like data, so it has data's cap; refused before any write."""
    limit = settings.MAX_JOB_BYTES
    errors = [
        FieldError(path, f"is {size} bytes encoded; the limit is {limit}")
        for path, result in results
        if result is not None and (size := encoded_size(result)) > limit
    ]
    errors += [error for path, result in results for error in payload_shape(result, path)]
    if errors:
        raise PayloadTooLarge("A result is larger than MAX_JOB_BYTES.", errors=errors)


def _refuse_oversize(sizes: Sequence[tuple[int, str]], queue: Queue) -> None:
    """A queue may cap its jobs' data lower than MAX_JOB_BYTES."""
    limit = queue.job_bytes_limit
    errors = [
        FieldError(path, f"is {size} bytes encoded; this queue's limit is {limit}")
        for size, path in sizes
        if size > limit
    ]
    if errors:
        raise PayloadTooLarge("Job data is larger than this queue allows.", errors=errors)


def _refuse_off_schema(values: Sequence[tuple[Any, str]], queue: Queue) -> None:
    """Job data must satisfy the queue's schema, if it has one: one compiled validator
    for the whole batch, every failing path listed."""
    if queue.json_schema is None:
        return
    validator = validator_for(queue.json_schema)
    errors = [error for data, path in values for error in schema_errors(validator, data, path)]
    if errors:
        raise SchemaValidationFailed("Job data does not match the queue's schema.", errors=errors)


def _refuse_cards_in_data(
    found: Sequence[tuple[Sequence[CardFinding], str]], allowlist: list[str] | None
) -> None:
    """Job data: card numbers outside the queue's allow-list are refused."""
    kept = [
        finding
        for findings, root in found
        for finding in not_allowed(findings, root=root, allowed=allowlist or ())
    ]
    refused = card_problem(kept)
    if refused is not None:
        raise refused


def _refuse_cards_in_subjects(derived: Sequence[tuple[dict[str, Any], str]], queue: Queue) -> None:
    """A subject taken from the data (the value at the queue's ``subject_path``) is stored
    in clear, in the subject column every getJob holder sees: no card number in it, even
    where the queue's allow-list lets one stay in the (encrypted) data."""
    segments = "".join(f"/{pointer_segment(part)}" for part in queue.subject_path.split("."))
    found = [
        finding
        for data, root in derived
        if (subject := subject_from(data, queue.subject_path)) is not None
        for finding in find_cards_in_text(subject, root + segments)
    ]
    if found:
        raise CardNumberDetected(
            "A card number may not become a job's subject: the value at the queue's "
            "subject_path would be stored in clear as the subject.",
            errors=[
                FieldError(
                    finding.path,
                    "holds a payment card number, which would be stored as the subject",
                )
                for finding in found
            ],
            masked=[finding.masked for finding in found],
        )


def _refuse_cards(values: Sequence[tuple[str, Any]]) -> None:
    """Results and errors are payloads too: no card numbers or card secrets."""
    refused = card_problem([found for path, value in values for found in find_cards(value, path)])
    if refused is not None:
        raise refused


def job_ack(
    *, job_id: uuid.UUID, lease_id: uuid.UUID, owner: str, result: Any = None, actor: Actor
) -> Job:
    """Complete a job whose lease is current and ``owner``'s; returns it as stored."""
    _check_result_sizes([("/result", result)])
    _refuse_cards([("/result", result)])
    now = timezone.now()
    with transaction.atomic():
        live = _live_lease(job_id, lease_id, owner, now)
        sealed = None if result is None else Sealed.of(result, pk=job_id, field="result")
        if not live.update(result=sealed, **_completion(now)):
            raise LeaseConflict(STALE_LEASE)
        job = _get(job_id)
        audit_record(actor=actor, action=Action.ACK, queue=job.queue.name, job_ids=[job_id])
    return job


def check_acks(acks: Sequence[AckSpec], *, root: str = "/jobs") -> None:
    """What can be refused before any write: result sizes and card numbers."""
    results = [(f"{root}/{i}/result", ack.result) for i, ack in enumerate(acks)]
    _check_result_sizes(results)
    _refuse_cards(results)


def complete_acked(
    acks: Sequence[AckSpec],
    *,
    owner: str,
    now: datetime,
    queue_id: int | None = None,
    root: str = "/jobs",
) -> set[str]:
    """Complete ``acks`` in the caller's transaction, all or nothing (a pull with
    piggy-backed acks calls this too, limited to its queue): one stale or foreign lease
    and none is acked, and the LeaseConflict names each offending item. Returns the
    names of the jobs' queues."""
    ids = [ack.job_id for ack in acks]
    leased = Job.objects.select_for_update(of=("self",)).filter(
        id__in=ids, state=JobState.ACTIVE, lease_owner=owner, lease_expires_at__gt=now
    )
    if queue_id is not None:
        leased = leased.filter(queue_id=queue_id)
    rows = leased.order_by("id").values_list("id", "lease_id", "queue__name")
    leases = {job_id: (lease, queue) for job_id, lease, queue in rows}
    stale = [
        FieldError(f"{root}/{index}/lease_id", "is not the job's current lease")
        for index, ack in enumerate(acks)
        if leases.get(ack.job_id, (None, ""))[0] != ack.lease_id
    ]
    if stale:
        raise LeaseConflict(STALE_LEASE, errors=stale)
    Job.objects.filter(id__in=ids).update(**_completion(now))
    with_result = [Job(id=ack.job_id, result=ack.result) for ack in acks if ack.result is not None]
    if with_result:
        bulk_update_sealed(Job, with_result, ["result"])
    return {queue for _, queue in leases.values()}


def jobs_ack(*, acks: Sequence[AckSpec], owner: str, actor: Actor) -> None:
    """Complete many jobs, all or nothing: one stale or foreign lease and none is
    acked, and the error names each offending item."""
    check_acks(acks)
    now = timezone.now()
    with transaction.atomic():
        queues = complete_acked(acks, owner=owner, now=now)
        audit_record(
            actor=actor,
            action=Action.ACK,
            queue=next(iter(queues)) if len(queues) == 1 else "",
            job_ids=[ack.job_id for ack in acks],
            details={"count": len(acks)},
        )


def _leased_for_update(job_id: uuid.UUID, lease_id: uuid.UUID, owner: str, now: datetime) -> Job:
    job: Job | None = (
        _live_lease(job_id, lease_id, owner, now)
        .select_for_update(of=("self",))
        .select_related("queue")
        .first()
    )
    if job is None:
        raise LeaseConflict(STALE_LEASE)
    return job


def job_fail(
    *,
    job_id: uuid.UUID,
    lease_id: uuid.UUID,
    owner: str,
    error: str,
    code: str = "",
    retry: bool = True,
    delay_ms: int | None = None,
    actor: Actor,
    rand: Callable[[], float] = random.random,
) -> Job:
    """Record a failed attempt; retry after the job's backoff (or ``delay_ms``), or go to
    ``failed`` when attempts are used up or the worker says ``retry: false``. ``code``
    (e.g. the exception's class) is shown to everyone; ``error`` only with reveal."""
    _refuse_cards([("/error", error), ("/code", code)])
    now = timezone.now()
    with transaction.atomic():
        job = _leased_for_update(job_id, lease_id, owner, now)
        delay = (
            delay_ms
            if delay_ms is not None
            else retry_delay_ms(job.backoff, job.attempts, rand=rand)
        )
        record_failure(job, error, now=now, retry=retry, delay_ms=delay, code=code)
        job.save(update_fields=FAILURE_FIELDS)
        audit_record(
            actor=actor,
            action=Action.FAIL,
            queue=job.queue.name,
            job_ids=[job_id],
            details={"state": str(job.state), "attempt": job.attempts},
        )
    return job


def job_progress(
    *,
    job_id: uuid.UUID,
    lease_id: uuid.UUID,
    owner: str,
    progress: int,
    message: str = "",
    actor: Actor,
) -> Job:
    """Report progress; also a heartbeat that extends the lease by its length. The
    message is kept in clear (and masked without reveal): no card number in it."""
    _refuse_cards([("/message", message)])
    now = timezone.now()
    with transaction.atomic():
        job = _leased_for_update(job_id, lease_id, owner, now)
        job.progress = progress
        job.progress_message = message[: limits.MAX_PROGRESS_MESSAGE]
        job.lease_expires_at = now + timedelta(seconds=job.lease_seconds)
        job.save(update_fields=["progress", "progress_message", "lease_expires_at"])
        audit_record(
            actor=actor,
            action=Action.PROGRESS,
            queue=job.queue.name,
            job_ids=[job_id],
            details={"progress": progress},
        )
    return job


# -- what producers and operators do ---------------------------------------------------------


def _get(job_id: uuid.UUID) -> Job:
    job: Job | None = Job.objects.select_related("queue").filter(id=job_id).first()
    if job is None:
        raise JobNotFound()
    return job


def _for_update(job_id: uuid.UUID) -> Job:
    job: Job | None = (
        Job.objects.select_for_update(of=("self",))
        .select_related("queue")
        .filter(id=job_id)
        .first()
    )
    if job is None:  # deleted since the caller looked it up
        raise JobNotFound()
    return job


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
        job = _for_update(job_id)
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
        job = _for_update(job_id)
        if job.state != JobState.WAITING or job.started_at is not None:
            raise StateConflict("Only a job that has not started yet can be updated.")
        _refuse_oversize([(encoded_size(data), "/data")], job.queue)
        _refuse_off_schema([(data, "/data")], job.queue)
        _refuse_cards_in_data([(find_cards(data, "/data"), "/data")], job.queue.card_allowlist)
        path = job.queue.subject_path
        if job.subject == subject_from(job.data, path):
            # The subject came from the data (not given at push): follow the new data,
            # so erasure finds the job under the subject it is now about.
            _refuse_cards_in_subjects([(data, "/data")], job.queue)
            job.subject = subject_from(data, path)
        job.data = data
        job.save(update_fields=["data", "subject"])
        audit_record(actor=actor, action=Action.UPDATE, queue=job.queue.name, job_ids=[job_id])
    return job


def job_retry(*, job_id: uuid.UUID, actor: Actor, reason: str = "") -> Job:
    """Send a failed, cancelled or expired job back to waiting with fresh attempts."""
    retryable = (JobState.FAILED, JobState.CANCELLED, JobState.EXPIRED)
    with transaction.atomic():
        job = _for_update(job_id)
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


# -- queues ------------------------------------------------------------------------------


def _queue_for_update(name: str) -> Queue:
    queue: Queue | None = Queue.objects.select_for_update().filter(name=name).first()
    if queue is None:
        raise QueueNotFound()
    return queue


def _set_flag(name: str, flag: str, value: bool) -> tuple[Queue, bool]:
    """Set a queue's boolean ``flag`` (locked row); whether it changed."""
    queue = _queue_for_update(name)
    changed = getattr(queue, flag) != value
    if changed:
        setattr(queue, flag, value)
        queue.save(update_fields=[flag])
    return queue, changed


def queue_set_paused(*, name: str, paused: bool, actor: Actor, reason: str = "") -> Queue:
    """Pause (hand out nothing) or resume a queue. Pausing a paused queue changes
    nothing and is still recorded, so the trail shows who asked. The admin asks for a
    ``reason`` (kept in the event); the API's pause and resume give none."""
    with transaction.atomic():
        queue, changed = _set_flag(name, "paused", paused)
        audit_record(
            actor=actor,
            action=Action.PAUSE if paused else Action.RESUME,
            queue=name,
            details={"changed": changed, **({"reason": reason[:500]} if reason else {})},
        )
    return queue


def queue_create(*, name: str, subject_path: str, actor: Actor) -> Queue:
    """Create a queue before its first push (a push creates one with defaults)."""
    with transaction.atomic():
        queue = Queue(name=name, subject_path=subject_path)
        queue.full_clean()
        queue.save(force_insert=True)
        audit_record(
            actor=actor,
            action=Action.QUEUE_CREATE,
            queue=name,
            details={"subject_path": subject_path},
        )
    return queue


def queue_update(
    *,
    name: str,
    subject_path: str,
    card_allowlist: list[str] | None = None,
    max_job_bytes: int | None = None,
    json_schema: dict[str, Any] | None = None,
    sensitive_fields: list[str] | None = None,
    pii_fields: list[str] | None = None,
    actor: Actor,
) -> Queue:
    """Change a queue's settings. Its name and paused flag are not settings: a name is
    what permissions match, and pausing has its own service."""
    with transaction.atomic():
        queue = _queue_for_update(name)
        fields = ["subject_path", "card_allowlist", "max_job_bytes", "json_schema"]
        fields += ["sensitive_fields"] if sensitive_fields is not None else []
        fields += ["pii_fields"] if pii_fields is not None else []
        before = {field: getattr(queue, field) for field in fields}
        if sensitive_fields is not None:
            queue.sensitive_fields = sensitive_fields
        if pii_fields is not None:
            queue.pii_fields = pii_fields
        queue.subject_path = subject_path
        queue.card_allowlist = card_allowlist or None
        queue.max_job_bytes = max_job_bytes
        queue.json_schema = json_schema
        queue.full_clean()
        queue.save(update_fields=fields)
        after = {field: getattr(queue, field) for field in fields}
        audit_record(
            actor=actor,
            action=Action.QUEUE_UPDATE,
            queue=name,
            details={
                field: {"from": before[field], "to": after[field]}
                for field in before
                if before[field] != after[field]
            },
        )
    return queue


def _queue_for_limits(name: str) -> tuple[Queue, bool]:
    """The queue, locked; created if missing (limits are often set before any push)."""
    queue: Queue | None = Queue.objects.select_for_update().filter(name=name).first()
    if queue is not None:
        return queue, False
    queue = Queue(name=name)
    queue.full_clean()
    queue.save(force_insert=True)
    return queue, True


def queue_set_rate_limit(
    *, name: str, max_jobs: int | None, duration_ms: int | None, actor: Actor
) -> Queue:
    """setRateLimit: pull hands out at most ``max_jobs`` per ``duration_ms`` in total
    across app servers; both None removes the limit."""
    with transaction.atomic():
        queue, created = _queue_for_limits(name)
        before = (queue.rate_limit_max, queue.rate_limit_duration_ms)
        queue.rate_limit_max, queue.rate_limit_duration_ms = max_jobs, duration_ms
        queue.save(update_fields=["rate_limit_max", "rate_limit_duration_ms"])
        audit_record(
            actor=actor,
            action=Action.SET_RATE_LIMIT if max_jobs is not None else Action.REMOVE_RATE_LIMIT,
            queue=name,
            details={
                "from": None if before[0] is None else {"max": before[0], "duration_ms": before[1]},
                "to": None if max_jobs is None else {"max": max_jobs, "duration_ms": duration_ms},
                **({"queue_created": True} if created else {}),
            },
        )
    return queue


def queue_set_concurrency(*, name: str, max_active: int | None, actor: Actor) -> Queue:
    """At most ``max_active`` jobs of the queue active at once; None removes it."""
    with transaction.atomic():
        queue, created = _queue_for_limits(name)
        before = queue.concurrency_max
        queue.concurrency_max = max_active
        queue.save(update_fields=["concurrency_max"])
        audit_record(
            actor=actor,
            action=Action.SET_CONCURRENCY if max_active is not None else Action.REMOVE_CONCURRENCY,
            queue=name,
            details={
                "from": before,
                "to": max_active,
                **({"queue_created": True} if created else {}),
            },
        )
    return queue


def queue_set_schema(*, name: str, schema: dict[str, Any] | None, actor: Actor) -> Queue:
    """Set (or, with None, remove) the JSON Schema every job's data must satisfy. An
    invalid schema, or one that refers outside itself, is refused (400)."""
    problem = None if schema is None else schema_problem(schema)
    if problem:
        raise InvalidInput(problem, errors=[FieldError("/schema", problem)])
    _refuse_cards([("/schema", schema)])  # stored and shown to every queue reader
    with transaction.atomic():
        queue, created = _queue_for_limits(name)
        had = queue.json_schema is not None
        queue.json_schema = schema
        queue.save(update_fields=["json_schema"])
        audit_record(
            actor=actor,
            action=Action.SET_SCHEMA if schema is not None else Action.REMOVE_SCHEMA,
            queue=name,
            details={"replaced": had, **({"queue_created": True} if created else {})},
        )
    return queue


# -- encryption keys ---------------------------------------------------------------------

SEALED_FIELDS = ("data", "result", "error", "errors")


@dataclass(frozen=True)
class Resealed:
    """One batch of key rotation. ``last_id`` is where the next batch starts (None:
    the table is done); ``found`` counts the stored values by the key that sealed them
    before this batch."""

    last_id: uuid.UUID | None
    jobs_scanned: int
    jobs_changed: int
    values_changed: int
    found: dict[str, int]


def jobs_reseal(*, after: uuid.UUID | None, limit: int, actor: Actor) -> Resealed:
    """Re-seal under the primary key every payload value of the next ``limit`` jobs
    (in id order, after ``after``) that another key sealed, in one transaction with the
    rows locked, so a worker's ack or fail meanwhile is neither lost nor overwritten.
    Values already under the primary key are left alone: a rerun after an interruption
    only does what is left. A value whose key is gone raises DecryptionFailed (naming
    the job) and the batch changes nothing."""
    primary = keyring().primary
    with transaction.atomic():
        rows = Job.objects.order_by("id").only("id", *SEALED_FIELDS)
        if after is not None:
            rows = rows.filter(id__gt=after)
        jobs = list(rows.select_for_update(no_key=True)[:limit])
        found: dict[str, int] = {}
        changed: list[Job] = []
        values_changed = 0
        for job in jobs:
            stale = []
            for name in SEALED_FIELDS:
                stored = job.__dict__[name]
                if not isinstance(stored, Stored):
                    continue  # an empty value (NULL) has nothing to re-seal
                found[stored.key_id] = found.get(stored.key_id, 0) + 1
                if stored.key_id != primary:
                    stale.append(name)
            if stale:
                for name in stale:
                    getattr(job, name)  # opened with its old key, sealed again on write
                values_changed += len(stale)
                changed.append(job)
        fields = [
            name
            for name in SEALED_FIELDS
            if any(not isinstance(job.__dict__[name], Stored) for job in changed)
        ]
        if changed:
            # Values of a changed job that were already under the primary key are
            # written again too (as read, the column's bytes unchanged).
            bulk_update_sealed(Job, changed, fields)
            audit_record(
                actor=actor,
                action=Action.KEYS_ROTATE,
                job_ids=[job.id for job in changed],
                details={
                    "jobs": len(changed),
                    "values": values_changed,
                    "to_key": primary,
                    "from_keys": sorted(key for key in found if key != primary),
                },
            )
    return Resealed(
        last_id=jobs[-1].id if len(jobs) == limit else None,
        jobs_scanned=len(jobs),
        jobs_changed=len(changed),
        values_changed=values_changed,
        found=found,
    )


def queue_set_legal_hold(*, name: str, hold: bool, actor: Actor, reason: str = "") -> Queue:
    """Place or release a legal hold: while held, retention and erasure leave the
    queue's jobs alone (and report it)."""
    with transaction.atomic():
        queue, changed = _set_flag(name, "legal_hold", hold)
        audit_record(
            actor=actor,
            action=Action.LEGAL_HOLD,
            queue=name,
            details={"hold": hold, "changed": changed, "reason": reason[:500]},
        )
    return queue


# -- staff rights on queues ----------------------------------------------------------------

QUEUE_ROLES = {
    "viewer": ("view_queue",),
    "operator": ("view_queue", "change_queue", "operate_queue"),
    "revealer": ("reveal_queue",),
}


def queue_grant(
    *, queue_name: str, role: str, grantee: Any, revoke: bool = False, actor: Actor
) -> list[str]:
    """Give (or take back) a staff user or group a role on one queue (django-guardian
    object permissions); recorded with who and what. Returns the permissions changed."""
    from guardian.shortcuts import assign_perm, remove_perm

    if role not in QUEUE_ROLES:
        raise InvalidInput(f"The role is one of {', '.join(QUEUE_ROLES)}.")
    with transaction.atomic():
        queue = _queue_for_update(queue_name)
        codenames = list(QUEUE_ROLES[role])
        for codename in codenames:
            (remove_perm if revoke else assign_perm)(f"queues.{codename}", grantee, queue)
        kind = "group" if grantee.__class__.__name__ == "Group" else "user"
        label = grantee.name if kind == "group" else grantee.get_username()
        audit_record(
            actor=actor,
            action=Action.QUEUE_REVOKE if revoke else Action.QUEUE_GRANT,
            queue=queue_name,
            details={"role": role, "permissions": codenames, kind: label},
        )
    return codenames
