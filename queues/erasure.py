"""GDPR erasure: every job about a data subject, found and redacted or deleted.

A job is about the subject when its ``subject`` column says so, or when the value at its
queue's ``subject_path`` inside the (decrypted) data does (a push may have named another
subject, or the path may have changed since). Redaction replaces the queue's
``pii_fields`` and ``sensitive_fields`` with ``[REDACTED]`` at any depth in data and
result, removes the identifier (the ``subject`` column, the value at ``subject_path``
in data and result, and the identifier wherever else it appears in a value or key),
clears error texts, history and progress message (they may quote
personal data), drops tags and an idempotency key that contain the identifier, and
cancels the job if it has not finished, so nothing runs on the subject's data any more
and a worker holding its lease can no longer ack or fail it. Delete mode removes the
jobs. Queues under legal hold are skipped and reported.

One service, ``subject_erase``, serves ``manage.py gdpr_erase`` and
``POST /api/v1/compliance/erasures``: one transaction, one audit event, and for an
executed run an ``ErasureRequest`` receipt. Neither holds the subject, only its HMAC
pseudonym."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from compliance.audit import Action, Actor, audit_record
from compliance.models import ErasureRequest
from security.fields import bulk_update_sealed

from .jobspec import subject_from
from .models import UNFINISHED, Job, JobState, Queue

REDACTED = "[REDACTED]"
_SCAN_BATCH = 500


class ErasureRefused(ValueError):
    pass


def pseudonym(subject: str) -> str:
    """A stable, keyed stand-in for the subject (HMAC-SHA256 with the token pepper)."""
    return hmac.new(
        settings.TOKEN_PEPPER.encode(), b"flashq-erasure\x00" + subject.encode(), hashlib.sha256
    ).hexdigest()


def _redact(value: Any, names: frozenset[str], found: set[str]) -> Any:
    if isinstance(value, dict):
        redacted = {}
        for key, child in value.items():
            if key.lower() in names:
                found.add(key)
                redacted[key] = REDACTED
            else:
                redacted[key] = _redact(child, names, found)
        return redacted
    if isinstance(value, list):
        return [_redact(child, names, found) for child in value]
    return value


def _without_path(data: Any, path: str) -> Any:
    """A copy of ``data`` without the value at the dotted ``path``."""
    head, _, rest = path.partition(".")
    if not isinstance(data, dict) or head not in data:
        return data
    if not rest:
        return {key: value for key, value in data.items() if key != head}
    return {**data, head: _without_path(data[head], rest)}


def _names(value: Any, queue: Queue, subject: str) -> bool:
    return isinstance(value, dict) and subject_from(value, queue.subject_path) == subject


def _mentions(value: Any, subject: str) -> bool:
    return subject in json.dumps(value, ensure_ascii=False)


def _jobs_about(subject: str, queues: dict[int, Queue]) -> Iterator[Job]:
    """Jobs whose subject column names the subject, then those whose data does (a scan:
    the data is encrypted, so it is opened job by job)."""
    yield from Job.objects.filter(subject=subject).order_by("id")
    last: uuid.UUID | None = None
    while True:
        rows = Job.objects.exclude(subject=subject).order_by("id")
        if last is not None:
            rows = rows.filter(id__gt=last)
        batch = list(rows[:_SCAN_BATCH])
        if not batch:
            return
        # Only data is opened here (the other payload columns stay sealed until used).
        yield from (
            job
            for job in batch
            if subject_from(job.data, queues[job.queue_id].subject_path) == subject
        )
        last = batch[-1].id


def _replaced(value: Any, subject: str) -> Any:
    if isinstance(value, str):
        return value.replace(subject, REDACTED)
    if isinstance(value, dict):
        return {_replaced(k, subject): _replaced(v, subject) for k, v in value.items()}
    if isinstance(value, list):
        return [_replaced(item, subject) for item in value]
    return value


def _auditlog_entries(subject: str) -> list[Any]:
    """django-auditlog entries whose diff or label mentions the subject (configuration
    seldom does, but a queue or token may be named after a person)."""
    from auditlog.models import LogEntry

    return list(
        LogEntry.objects.annotate(text=Cast("changes", TextField())).filter(
            Q(text__contains=subject)
            | Q(changes_text__contains=subject)
            | Q(object_repr__contains=subject)
        )
    )


def _scheduler_rows(subject: str) -> list[Any]:
    """django-q2 task results and queued tasks that mention the subject. flashQ's own
    tasks carry no arguments; this covers anything else scheduled in the same place."""
    from django_q.models import OrmQ, Task

    found: list[Any] = [
        task
        for task in Task.objects.all()
        if subject in repr((task.name, task.func, task.args, task.kwargs, task.result))
    ]
    for queued in OrmQ.objects.all():
        try:
            body = repr(queued.task())
        except Exception:  # noqa: S112 (an unreadable row is not ours to judge)
            continue
        if subject in body:
            found.append(queued)
    return found


@dataclass
class Erasure:
    executed: bool
    mode: str
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    elsewhere: dict[str, int] = field(default_factory=dict)
    fields: dict[str, list[str]] = field(default_factory=dict)
    held: list[str] = field(default_factory=list)
    receipt: ErasureRequest | None = None

    @property
    def total(self) -> int:
        return sum(sum(states.values()) for states in self.counts.values())


def subject_erase(*, subject: str, mode: str, reason: str, execute: bool, actor: Actor) -> Erasure:
    """Find (and with ``execute``, redact or delete) every job about ``subject``."""
    if not subject or len(subject) > 255:
        raise ErasureRefused("The subject is 1 to 255 characters.")
    if mode not in ErasureRequest.Mode.values:
        raise ErasureRefused("The mode is redact or delete.")
    if execute and not reason.strip():
        raise ErasureRefused("An erasure needs a reason (a ticket or request reference).")
    if subject in reason:
        raise ErasureRefused("The reason must not contain the subject: it is kept.")
    outcome = Erasure(executed=execute, mode=mode)
    with transaction.atomic():
        queues = {queue.pk: queue for queue in Queue.objects.all()}
        held = {queue.pk for queue in queues.values() if queue.legal_hold}
        found = [job for job in _jobs_about(subject, queues)]
        jobs = [job for job in found if job.queue_id not in held]
        outcome.held = sorted({queues[job.queue_id].name for job in found if job.queue_id in held})
        if execute and jobs:
            jobs = list(
                Job.objects.select_for_update()
                .filter(id__in=[job.id for job in jobs])
                .order_by("id")
            )
        for job in jobs:
            queue = queues[job.queue_id]
            per_queue = outcome.counts.setdefault(queue.name, {})
            per_queue[job.state] = per_queue.get(job.state, 0) + 1
            names = frozenset(n.lower() for n in [*queue.pii_fields, *queue.sensitive_fields])
            seen: set[str] = set()
            data = _redact(job.data, names, seen)
            result = _redact(job.result, names, seen)
            if _names(job.data, queue, subject) or _names(job.result, queue, subject):
                seen.add(queue.subject_path)
            if _names(job.data, queue, subject):
                data = _without_path(data, queue.subject_path)
            if _names(job.result, queue, subject):
                result = _without_path(result, queue.subject_path)
            # The identifier anywhere else, in a value or a key (a "to" field, a note).
            if _mentions(data, subject) or _mentions(result, subject):
                seen.add("(the identifier in other values)")
            data, result = _replaced(data, subject), _replaced(result, subject)
            if job.error or job.errors:
                seen.add("(error texts)")
            outcome.fields[queue.name] = sorted(set(outcome.fields.get(queue.name, [])) | seen)
            if execute and mode == ErasureRequest.Mode.REDACT:
                _apply_redaction(job, subject, data, result)
        if execute and jobs:
            if mode == ErasureRequest.Mode.DELETE:
                Job.objects.filter(id__in=[job.id for job in jobs]).delete()
            else:
                bulk_update_sealed(Job, jobs, REDACTION_FIELDS)
        entries, scheduled = _auditlog_entries(subject), _scheduler_rows(subject)
        outcome.elsewhere = {"auditlog": len(entries), "scheduler": len(scheduled)}
        if execute:
            for entry in entries:
                entry.changes = _replaced(entry.changes, subject)
                entry.changes_text = entry.changes_text.replace(subject, REDACTED)
                entry.object_repr = entry.object_repr.replace(subject, REDACTED)
                entry.save(update_fields=["changes", "changes_text", "object_repr"])
            for row in scheduled:
                row.delete()
        stand_in = pseudonym(subject)
        details: dict[str, Any] = {
            "subject": stand_in,
            "mode": mode,
            "executed": execute,
            "counts": outcome.counts,
            "held": outcome.held,
            "total": outcome.total,
            "elsewhere": outcome.elsewhere,
        }
        if execute:
            outcome.receipt = ErasureRequest.objects.create(
                subject_pseudonym=stand_in,
                mode=mode,
                operator=actor.label[:150],
                reason=reason[:500],
                counts=outcome.counts,
                elsewhere=outcome.elsewhere,
                held=outcome.held,
                total=outcome.total,
            )
            details["receipt_id"] = outcome.receipt.pk
        audit_record(
            actor=actor,
            action=Action.GDPR_ERASE if execute else Action.GDPR_ERASE_PREVIEW,
            job_ids=[job.id for job in jobs],
            details={**details, **({"reason": reason[:500]} if execute else {})},
        )
    return outcome


REDACTION_FIELDS = [
    "data",
    "result",
    "error",
    "errors",
    "subject",
    "key",
    "tags",
    "progress_message",
    "state",
    "finished_at",
    "lease_id",
    "lease_owner",
    "lease_expires_at",
]


def _apply_redaction(job: Job, subject: str, data: Any, result: Any) -> None:
    job.data, job.result = data, result
    job.error, job.errors, job.progress_message = "", [], ""
    job.subject = None
    if job.key is not None and subject in job.key:
        job.key = None
    job.tags = [tag for tag in job.tags if subject not in str(tag)]
    if job.state in UNFINISHED:
        # Nothing runs on the subject's data any more; a worker's lease is void.
        job.state, job.finished_at = JobState.CANCELLED, timezone.now()
        job.lease_id, job.lease_owner, job.lease_expires_at = None, "", None
