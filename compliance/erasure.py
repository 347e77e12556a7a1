"""GDPR erasure: every job about a data subject, found and redacted or deleted.

A job is about the subject when its ``subject`` column says so, or when the value at its
queue's ``subject_path`` inside the (decrypted) data does (a push may have named another
subject, or the path may have changed since). Redaction replaces the queue's
``pii_fields`` and ``sensitive_fields`` with ``[REDACTED]`` at any depth in data and
result, removes the identifier (the ``subject`` column, the value at ``subject_path``
in data and result, and the identifier wherever else it appears in a value or key),
clears error texts and code, history and progress message (they may quote
personal data), drops tags and an idempotency key that contain the identifier, and
cancels the job if it has not finished, so nothing runs on the subject's data any more
and a worker holding its lease can no longer ack or fail it. Delete mode removes the
jobs, cancelling an unfinished one first. Either way a flow stays consistent: an
unfinished job's unfinished children are cancelled, and what waits for it settles
(queues.dependents: a parent fails or runs, it does not wait for ever). Queues under
legal hold are skipped and reported. Schedules whose job template is about the subject
are deleted in either mode (compliance.erasure_schedules) and counted under
``schedules`` in their queue's counts.

One service, ``subject_erase``, serves ``manage.py gdpr_erase``, the admin's erasure page
and ``POST /api/v1/compliance/erasures``: one transaction, one audit event, and for an
executed run an ``ErasureRequest`` receipt. Neither holds the subject, only its HMAC
pseudonym. The API decides per queue (verb ``erase``): queues its token may not erase
are skipped unread.

Erasure changes job and schedule rows only. The audit trail, django-auditlog history and django-q2's
rows are never rewritten: they never receive a payload or a subject in the first place
(tests/test_erasure_stores.py drives every path a job takes and scans them), so there is
nothing of the subject's there to erase, and an erasure cannot be turned into a tool
for rewriting history."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from compliance.audit import Action, Actor, audit_record
from compliance.erasure_schedules import (
    SCHEDULES,
    schedules_count,
    schedules_delete,
    schedules_to_erase,
)
from compliance.models import ErasureRequest
from kernel import limits
from kernel.problems import CardNumberDetected
from queues.dependents import Settled, jobs_withdrawn
from queues.jobspec import subject_from
from queues.models import UNFINISHED, Job, JobState, Queue
from queues.services import LEASE_FIELDS, deadlock_retried, release_lease
from security.cards import card_problem, find_cards_in_text
from security.fields import bulk_update_sealed
from security.masking import pseudonym

REDACTED = "[REDACTED]"
_SCAN_BATCH = 500


class ErasureRefused(ValueError):
    pass


class ReasonHoldsCardNumber(ErasureRefused, CardNumberDetected):
    """The reason is kept in clear, in the receipt and the append-only audit trail, so it
    may hold no card number: the API's 422 ``card-number-detected`` naming ``/reason``,
    and for the command and the admin a refusal like any other."""

    def __init__(self, found: CardNumberDetected) -> None:
        CardNumberDetected.__init__(
            self,
            "The reason holds a payment card number; reasons are kept in the receipt and "
            "the audit trail, so they may hold none.",
            errors=found.errors,
            masked=found.masked,
        )


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


def _jobs_about(subject: str, queues: dict[int, Queue], *, every_queue: bool) -> Iterator[Job]:
    """Jobs of ``queues`` whose subject column names the subject, then those whose data
    does (a scan: the data is encrypted, so it is opened job by job). Jobs of any other
    queue are neither read nor opened."""
    rows = Job.objects.all() if every_queue else Job.objects.filter(queue_id__in=list(queues))
    yield from rows.filter(subject=subject).order_by("id")
    last: uuid.UUID | None = None
    while True:
        page = rows.exclude(subject=subject).order_by("id")
        if last is not None:
            page = page.filter(id__gt=last)
        batch = list(page[:_SCAN_BATCH])
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


#: What an erasure leaves alone, and why that loses nothing: said on every receipt.
OTHER_STORES = (
    "not touched: the audit trail, django-auditlog history and django-q2 rows are never "
    "given job payloads or subjects (tested for every path a job takes)"
)


@dataclass
class Erasure:
    executed: bool
    mode: str
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    fields: dict[str, list[str]] = field(default_factory=dict)
    held: list[str] = field(default_factory=list)
    #: Queues the caller may not erase: not searched, so nothing about them is known.
    skipped: list[str] = field(default_factory=list)
    other_stores: str = OTHER_STORES
    receipt: ErasureRequest | None = None

    @property
    def total(self) -> int:
        """Jobs found (``counts`` also holds each queue's schedules, under SCHEDULES)."""
        return sum(
            n for states in self.counts.values() for k, n in states.items() if k != SCHEDULES
        )

    @property
    def schedules(self) -> int:
        return sum(states.get(SCHEDULES, 0) for states in self.counts.values())

    @property
    def done_to_jobs(self) -> str:
        """What the mode does to a job, in words: "redacted" or "deleted"."""
        return {ErasureRequest.Mode.REDACT: "redacted", ErasureRequest.Mode.DELETE: "deleted"}[
            ErasureRequest.Mode(self.mode)
        ]


@deadlock_retried
def subject_erase(
    *,
    subject: str,
    mode: str,
    reason: str,
    execute: bool,
    actor: Actor,
    may_erase: Callable[[str], bool] | None = None,
) -> Erasure:
    """Find (and with ``execute``, redact or delete) every job about ``subject`` in the
    queues ``may_erase`` allows (None: every queue, for the command and the admin, whose
    callers are already entitled to all of them). Other queues are skipped unread:
    neither counted nor touched, and nothing of their jobs reaches the outcome, the
    receipt or the audit event. Only job and schedule rows change."""
    _check_request(subject=subject, mode=mode, reason=reason, execute=execute)
    outcome = Erasure(executed=execute, mode=mode)
    with transaction.atomic():
        queues, outcome.skipped = _queues_in_reach(may_erase)
        jobs, outcome.held = _jobs_to_erase(subject, queues, every_queue=may_erase is None)
        schedules, held = schedules_to_erase(subject, queues, lock=execute)
        outcome.held = sorted({*outcome.held, *held})
        if execute:
            jobs = _locked(jobs)
        unfinished = [job for job in jobs if job.state in UNFINISHED]
        _count_and_redact(outcome, jobs, queues, subject)
        schedules_count(outcome.counts, schedules, queues)
        settled = Settled()
        if execute:
            settled = _write(jobs, unfinished, mode)
            schedules_delete(schedules)
            outcome.receipt = _receipt_write(outcome, subject=subject, reason=reason, actor=actor)
        _erasure_record(outcome, jobs, settled, subject=subject, reason=reason, actor=actor)
    return outcome


def _check_request(*, subject: str, mode: str, reason: str, execute: bool) -> None:
    """Refuse a request before anything is read: a bad subject or mode, an executed run
    without a reason, a reason that would keep the subject or a card number."""
    if not subject or len(subject) > limits.MAX_SUBJECT_LENGTH:
        raise ErasureRefused(f"The subject is 1 to {limits.MAX_SUBJECT_LENGTH} characters.")
    if mode not in ErasureRequest.Mode.values:
        raise ErasureRefused("The mode is redact or delete.")
    if execute and not reason.strip():
        raise ErasureRefused("An erasure needs a reason (a ticket or request reference).")
    if subject.casefold() in reason.casefold():
        raise ErasureRefused("The reason must not contain the subject: it is kept.")
    card = card_problem(find_cards_in_text(reason, "/reason"))
    if card is not None:
        raise ReasonHoldsCardNumber(card)


def _queues_in_reach(
    may_erase: Callable[[str], bool] | None,
) -> tuple[dict[int, Queue], list[str]]:
    """The queues the caller may erase (by id), and the names of those it may not."""
    every = list(Queue.objects.order_by("name"))
    queues = {q.pk: q for q in every if may_erase is None or may_erase(q.name)}
    return queues, [q.name for q in every if q.pk not in queues]


def _jobs_to_erase(
    subject: str, queues: dict[int, Queue], *, every_queue: bool
) -> tuple[list[Job], list[str]]:
    """The subject's jobs in ``queues`` outside a legal hold, and the held queues that
    have some (they are left alone, and reported)."""
    held = {queue.pk for queue in queues.values() if queue.legal_hold}
    found = list(_jobs_about(subject, queues, every_queue=every_queue))
    jobs = [job for job in found if job.queue_id not in held]
    return jobs, sorted({queues[job.queue_id].name for job in found if job.queue_id in held})


def _locked(jobs: list[Job]) -> list[Job]:
    """``jobs`` read again, locked until the erasure commits (an executed run)."""
    if not jobs:
        return jobs
    return list(
        Job.objects.select_for_update().filter(id__in=[job.id for job in jobs]).order_by("id")
    )


def _count_and_redact(
    outcome: Erasure, jobs: list[Job], queues: dict[int, Queue], subject: str
) -> None:
    """Count each job per queue and state and note the fields it holds of the subject;
    for an executed redaction, redact it (in memory: ``_write`` saves it)."""
    for job in jobs:
        queue = queues[job.queue_id]
        per_queue = outcome.counts.setdefault(queue.name, {})
        per_queue[job.state] = per_queue.get(job.state, 0) + 1
        data, result, seen = _redaction(job, queue, subject)
        outcome.fields[queue.name] = sorted(set(outcome.fields.get(queue.name, [])) | seen)
        if outcome.executed and outcome.mode == ErasureRequest.Mode.REDACT:
            _apply_redaction(job, subject, data, result)


def _redaction(job: Job, queue: Queue, subject: str) -> tuple[Any, Any, set[str]]:
    """The job's data and result redacted, and the fields where the subject was found."""
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
    return data, result, seen


def _write(jobs: list[Job], unfinished: list[Job], mode: str) -> Settled:
    """Delete the jobs, or save their redaction; the ``unfinished`` among them stop
    (cancelled, before a delete) and what waits for them settles."""
    now = timezone.now()
    stopped = [job.id for job in unfinished]
    watched = [job.id for job in unfinished if job.watched]
    settled = Settled()
    if mode == ErasureRequest.Mode.DELETE:
        Job.objects.filter(id__in=watched).update(state=JobState.CANCELLED, finished_at=now)
        if stopped:
            settled = jobs_withdrawn(stopped, watched=watched, now=now)
        Job.objects.filter(id__in=[job.id for job in jobs]).delete()
    elif jobs:
        bulk_update_sealed(Job, jobs, REDACTION_FIELDS)
        if stopped:
            settled = jobs_withdrawn(stopped, watched=watched, now=now)
    return settled


def _receipt_write(outcome: Erasure, *, subject: str, reason: str, actor: Actor) -> ErasureRequest:
    """The receipt of an executed erasure: the subject's pseudonym, never the subject."""
    return ErasureRequest.objects.create(
        subject_pseudonym=pseudonym(subject),
        mode=outcome.mode,
        operator=actor.label[:150],
        reason=reason[:500],
        counts=outcome.counts,
        held=outcome.held,
        skipped=outcome.skipped,
        other_stores=outcome.other_stores,
        total=outcome.total,
    )


def _erasure_record(
    outcome: Erasure,
    jobs: list[Job],
    settled: Settled,
    *,
    subject: str,
    reason: str,
    actor: Actor,
) -> None:
    """The erasure's audit event (a preview's, for a dry run), with the subject's
    pseudonym; the reason and the receipt only for an executed run."""
    details: dict[str, Any] = {
        "subject": pseudonym(subject),
        "mode": outcome.mode,
        "executed": outcome.executed,
        "counts": outcome.counts,
        "held": outcome.held,
        "skipped": outcome.skipped,
        "total": outcome.total,
        **settled.audit(),
    }
    if outcome.receipt is not None:
        details["receipt_id"] = outcome.receipt.pk
        details["reason"] = reason[:500]
    audit_record(
        actor=actor,
        action=Action.GDPR_ERASE if outcome.executed else Action.GDPR_ERASE_PREVIEW,
        job_ids=[*(job.id for job in jobs), *settled.job_ids],
        details=details,
    )


REDACTION_FIELDS = [
    "data",
    "result",
    "error",
    "errors",
    "error_code",
    "subject",
    "key",
    "tags",
    "progress_message",
    "state",
    "finished_at",
    *LEASE_FIELDS,
]


def _apply_redaction(job: Job, subject: str, data: Any, result: Any) -> None:
    job.data, job.result = data, result
    # A failure code is the worker's choice too (an exception name, or one naming the
    # subject: NoMail.u-4711), so it goes with the texts.
    job.error, job.errors, job.error_code, job.progress_message = "", [], "", ""
    job.subject = None
    if job.key is not None and subject in job.key:
        job.key = None
    job.tags = [tag for tag in job.tags if subject not in str(tag)]
    release_lease(job)  # a worker's lease is void, a completed job's too (no ack replay)
    if job.state in UNFINISHED:  # nothing runs on the subject's data any more
        job.state, job.finished_at = JobState.CANCELLED, timezone.now()
