"""A queue's settings: create, update, pause, rate limit, concurrency, schema and
legal hold."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from compliance.audit import Action, Actor, audit_record
from kernel.problems import (
    FieldError,
    InvalidInput,
)
from security.jobschema import (
    schema_problem,
)

from ..errors import QueueNotFound
from ..models import Queue
from .common import refuse_cards


def queue_for_update(name: str) -> Queue:
    queue: Queue | None = Queue.objects.select_for_update().filter(name=name).first()
    if queue is None:
        raise QueueNotFound()
    return queue


def _set_flag(name: str, flag: str, value: bool) -> tuple[Queue, bool]:
    """Set a queue's boolean ``flag`` (locked row); whether it changed."""
    queue = queue_for_update(name)
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
        queue = queue_for_update(name)
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


def queue_set_group_concurrency(*, name: str, max_active: int | None, actor: Actor) -> Queue:
    """At most ``max_active`` active jobs per group (a job's ``group``); None puts back
    the default, 1. Lowering it leaves jobs already active alone: no new job of a group
    is handed out until fewer than the new limit are active."""
    value = 1 if max_active is None else max_active
    with transaction.atomic():
        queue, created = _queue_for_limits(name)
        before = queue.group_concurrency
        queue.group_concurrency = value
        queue.save(update_fields=["group_concurrency"])
        audit_record(
            actor=actor,
            action=(
                Action.SET_GROUP_CONCURRENCY
                if max_active is not None
                else Action.REMOVE_GROUP_CONCURRENCY
            ),
            queue=name,
            details={"from": before, "to": value, **({"queue_created": True} if created else {})},
        )
    return queue


def queue_set_schema(*, name: str, schema: dict[str, Any] | None, actor: Actor) -> Queue:
    """Set (or, with None, remove) the JSON Schema every job's data must satisfy. An
    invalid schema, or one that refers outside itself, is refused (400)."""
    problem = None if schema is None else schema_problem(schema)
    if problem:
        raise InvalidInput(problem, errors=[FieldError("/schema", problem)])
    refuse_cards([("/schema", schema)])  # stored and shown to every queue reader
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
