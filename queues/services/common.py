"""What several services share: finding a job (or JobNotFound), the guards every write
of client data applies alike (size caps, the queue's schema, the card guard), and the
retry of a transaction PostgreSQL aborted as a deadlock's victim."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

from django.core.exceptions import ValidationError
from django.db import OperationalError, connection
from django.db.models import Model

from kernel.problems import (
    CardNumberDetected,
    FieldError,
    InvalidInput,
    PayloadTooLarge,
    pointer_segment,
)
from security.cards import CardFinding, card_problem, find_cards, find_cards_in_text, not_allowed
from security.jobschema import (
    SchemaValidationFailed,
    schema_errors,
    validator_for,
)

from ..errors import JobNotFound
from ..jobspec import subject_from
from ..models import Job, Queue


def refuse_oversize(sizes: Sequence[tuple[int, str]], queue: Queue) -> None:
    """A queue may cap its jobs' data lower than MAX_JOB_BYTES."""
    limit = queue.job_bytes_limit
    errors = [
        FieldError(path, f"is {size} bytes encoded; this queue's limit is {limit}")
        for size, path in sizes
        if size > limit
    ]
    if errors:
        raise PayloadTooLarge("Job data is larger than this queue allows.", errors=errors)


def refuse_off_schema(values: Sequence[tuple[Any, str]], queue: Queue) -> None:
    """Job data must satisfy the queue's schema, if it has one: one compiled validator
    for the whole batch, every failing path listed."""
    if queue.json_schema is None:
        return
    validator = validator_for(queue.json_schema)
    errors = [error for data, path in values for error in schema_errors(validator, data, path)]
    if errors:
        raise SchemaValidationFailed("Job data does not match the queue's schema.", errors=errors)


def refuse_cards_in_data(
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


def refuse_cards_in_subjects(derived: Sequence[tuple[dict[str, Any], str]], queue: Queue) -> None:
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


def refuse_cards(values: Sequence[tuple[str, Any]]) -> None:
    """Results and errors are payloads too: no card numbers or card secrets."""
    refused = card_problem([found for path, value in values for found in find_cards(value, path)])
    if refused is not None:
        raise refused


def full_clean_or_invalid(row: Model, *, exclude: list[str], what: str) -> None:
    """``row.full_clean()`` (constraints left to the database), its errors as a 400
    naming each field (``/url``), so a service refuses bad input before it saves."""
    try:
        row.full_clean(exclude=exclude, validate_constraints=False)
    except ValidationError as error:
        raise InvalidInput(
            f"The {what} is invalid.",
            errors=[
                FieldError(f"/{field}", " ".join(messages))
                for field, messages in error.message_dict.items()
            ],
        ) from error


def reason_details(reason: str) -> dict[str, str]:
    """An operator's reason as audit details (nothing when none was given). The trail is
    never erased, so a card number in it is refused (422 naming ``/reason``), whichever
    door the reason came in by."""
    refused = card_problem(find_cards_in_text(reason, "/reason"))
    if refused is not None:
        raise refused
    return {"reason": reason[:500]} if reason else {}


def job_get(job_id: uuid.UUID) -> Job:
    job: Job | None = Job.objects.select_related("queue").filter(id=job_id).first()
    if job is None:
        raise JobNotFound()
    return job


def job_for_update(job_id: uuid.UUID) -> Job:
    job: Job | None = (
        Job.objects.select_for_update(of=("self",))
        .select_related("queue")
        .filter(id=job_id)
        .first()
    )
    if job is None:  # deleted since the caller looked it up
        raise JobNotFound()
    return job


P = ParamSpec("P")
R = TypeVar("R")
DEADLOCK = "40P01"
DEADLOCK_TRIES = 5


def deadlock_retried(service: Callable[P, R]) -> Callable[P, R]:
    """Run ``service`` again (DEADLOCK_TRIES in all) when PostgreSQL aborted its
    transaction to break a deadlock (SQLSTATE 40P01). Every path locks a child before
    the jobs waiting for it, and a cancel locks the children before the parent
    (dependents.lock_below), but a parent failed by one child (child_failed) cancels
    its other children while it holds the parent: a sibling acked at that moment
    waits for the parent while holding itself. So can jobs tied across flows by
    dependencies, and a retry of a parent (it, then its failed children) crossing one
    of its child (it, then its parent: flowretry.parents_started). Only as the
    outermost transaction: inside a caller's (the admin's, a test's) the whole
    transaction is void, so it is the caller's to retry."""

    @functools.wraps(service)
    def retried(*args: P.args, **kwargs: P.kwargs) -> R:
        tries = 1
        while True:
            outermost = not connection.in_atomic_block
            try:
                return service(*args, **kwargs)
            except OperationalError as error:
                deadlock = getattr(error.__cause__, "sqlstate", None) == DEADLOCK
                if not (deadlock and outermost) or tries >= DEADLOCK_TRIES:
                    raise
                tries += 1

    return retried
