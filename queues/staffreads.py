"""What a staff user reads of jobs in the admin, and the audit of those reads.

A job page masks, for every role (superusers included), the queue's sensitive fields
and the free texts a worker wrote (the error, the error history's messages, the
progress message), as getJob does without ``reveal``. Seeing them takes a reveal: an
explicit request with a reason, allowed only with the reveal right on the job's queue.

Reads are audited, as PCI DSS 10.2.1.1 asks for access to cardholder data: opening a
job (``admin.jobView``), a search or filter over jobs (``admin.jobSearch``, with the
job ids shown) and a reveal (``admin.reveal``, with the reason, never the values). A
search term and filter values that may name a person (a tag) are recorded as keyed
pseudonyms, the erasure's, so an auditor can still find every search for a subject.
A plain job list (no search, no filter) shows ids, queue names, states and times (its
tag filter lists the tags of jobs the user may see), no payload, subject or key, so
paging through it is not recorded. The failed list is a filter, so recorded: it shows
each job's subject, as a job's page does, and, to a user with the reveal right on the
job's queue, the first line of its error (the event lists those jobs apart)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from compliance.audit import Action, Actor, audit_record, audit_refusal
from security.masking import MASKED, masked, masked_text, pseudonym

from .models import Job, Schedule

# Filters whose values are the platform's own vocabulary (states, queue ids, dates, a
# relation to a job id): recorded as given. Any other value (a tag, a search term) may
# name a person.
_PLAIN_FILTERS = frozenset(
    {"state", "queue", "created_at", "run_at", "finished_at", "failed_at", "related"}
)
# How much of an error's first line the failed list shows.
ERROR_LINE_CHARS = 160
# Keys of an error-history entry that a worker does not write as free text.
_HISTORY_PLAIN = frozenset({"attempt", "at", "code"})


@dataclass(frozen=True)
class JobReading:
    """A job's payloads and free texts as one staff user may see them now."""

    data: Any
    result: Any
    error: str
    errors: list[Any]
    progress_message: str


def job_reading(*, job: Job, revealed: bool) -> JobReading:
    """``job`` masked, or in clear for a reveal (the caller has checked the right)."""
    if revealed:
        return JobReading(
            data=job.data,
            result=job.result,
            error=str(job.error or ""),
            errors=list(job.errors or ()),
            progress_message=job.progress_message,
        )
    hidden = job.queue.sensitive_fields or ()
    return JobReading(
        data=masked(job.data, hidden),
        result=masked(job.result, hidden),
        error=masked_text(job.error) or "",
        errors=[_history_entry(entry) for entry in job.errors or ()],
        progress_message=masked_text(job.progress_message) or "",
    )


def _history_entry(entry: Any) -> Any:
    if not isinstance(entry, dict):
        return MASKED
    return {key: value if key in _HISTORY_PLAIN else MASKED for key, value in entry.items()}


def job_view_record(*, job: Job, actor: Actor) -> None:
    """A staff user opened ``job``'s page."""
    with transaction.atomic():
        audit_record(
            actor=actor, action=Action.ADMIN_JOB_VIEW, queue=job.queue.name, job_ids=[job.id]
        )


def schedule_view_record(*, schedule: Schedule, actor: Actor) -> None:
    """A staff user opened ``schedule``'s page (its template data masked)."""
    with transaction.atomic():
        audit_record(
            actor=actor,
            action=Action.GET_SCHEDULE,
            queue=schedule.queue.name,
            details={"name": schedule.name, "via": "admin"},
        )


def jobs_search_record(
    *,
    search: str,
    filters: Mapping[str, str],
    shown: Iterable[tuple[object, str]],
    actor: Actor,
    errors_in_clear: Iterable[object] = (),
) -> None:
    """A staff user searched or filtered jobs; ``shown`` is the (job id, queue name) of
    each job on the page they got, ``errors_in_clear`` the jobs whose error's first line
    it showed unmasked (job_error_lines)."""
    rows = list(shown)
    queues = sorted({queue for _, queue in rows})
    details: dict[str, Any] = {
        "filters": {key: _recordable(key, value) for key, value in sorted(filters.items())},
        "queues": queues,
    }
    in_clear = [str(job_id) for job_id in errors_in_clear]
    if in_clear:
        details["errors_in_clear"] = in_clear
    if search:
        details["search_pseudonym"] = pseudonym(search)
    with transaction.atomic():
        audit_record(
            actor=actor,
            action=Action.ADMIN_JOB_SEARCH,
            queue=queues[0] if len(queues) == 1 else "",
            job_ids=[job_id for job_id, _ in rows],
            details=details,
        )


def job_error_lines(*, job_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The first line of each job's error (at most ERROR_LINE_CHARS), in clear: for the
    failed list of a user with the reveal right on these jobs' queues (the caller has
    checked it, and the list's event names the jobs). One query, opening only the error
    column: the rest of the error, the data and the history stay sealed."""
    ids = list(job_ids)
    if not ids:
        return {}
    lines = {}
    for job in Job.objects.filter(id__in=ids).only("id", "error"):
        text = str(job.error or "")
        lines[job.id] = (text.splitlines() or [""])[0][:ERROR_LINE_CHARS]
    return lines


def _recordable(key: str, value: str) -> str:
    return value if key.split("__", 1)[0] in _PLAIN_FILTERS else f"pseudonym:{pseudonym(value)}"


def job_reveal_record(*, job: Job, reason: str, actor: Actor) -> int:
    """A staff user with the reveal right sees ``job`` in clear, for ``reason``.
    Returns the event's id (the page names it)."""
    with transaction.atomic():
        event = audit_record(
            actor=actor,
            action=Action.ADMIN_REVEAL,
            queue=job.queue.name,
            job_ids=[job.id],
            details={"reason": reason[:500]},
        )
    return int(event.pk)


def job_reveal_refusal(*, job: Job, actor: Actor) -> None:
    """A staff user who may see ``job`` masked asked to reveal it without the right."""
    audit_refusal(
        actor=actor,
        action=Action.ADMIN_REVEAL,
        status=403,
        queue=job.queue.name,
        job_ids=[job.id],
        details={"refused": "no reveal right on the queue"},
    )
