"""Jobs that wait for other jobs: a flow's parent for its children, a job for its
``depends_on``. One rule for both, kept in one place.

The data: a ``JobDependency`` row says that ``job`` waits for ``depends_on`` (kind
``child`` or ``dependency``). A waiting job is in state ``waiting-children`` and is never
handed out. Every job that is waited for, by a job or by a client's ``wait``, has
``watched`` set.

The rule (``verdict``), given the states of what a job waits for and its
``on_child_failure``:

- a dependency that failed, was cancelled, expired or is gone: the job fails with code
  ``dependency_failed`` (it never waits for ever);
- a child that failed for good, under ``fail``: the job fails with code
  ``child_failed``, and its unfinished children are cancelled;
- under ``ignore`` or ``continue`` a failed child counts as finished;
- anything still unfinished: the job keeps waiting;
- otherwise it becomes ready (``waiting``) in its own queue.

The engine: whatever takes a watched job to a finished state (ack, fail, lease recovery,
timeout, cancel, ttl, delete, erasure) calls ``jobs_finished`` in the same transaction,
so a child finishing and its parent becoming ready commit together. It locks the
waiting jobs (in id order) before it reads what they wait for, with a fresh statement:
of several children finishing at once on different app servers, the last to take the
parent's lock sees them all, so the parent becomes ready exactly once.

A push with ``depends_on`` marks its targets watched with an UPDATE that returns their
states (``watch_targets``): either a finishing transaction saw the mark, or the push saw
the finished state; nothing falls between them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from django.db import connection

from .models import FAILED_FOR_GOOD, UNFINISHED, DependencyKind, Job, OnChildFailure

CHILD_FAILED = "child_failed"
DEPENDENCY_FAILED = "dependency_failed"
# The PostgreSQL channel a finishing watched job NOTIFYs (payload: the job id), which a
# client's GET /jobs/{id}/wait LISTENs on.
DONE_CHANNEL = "flashq_done"


class Verdict(StrEnum):
    WAIT = "wait"
    READY = "ready"
    FAIL = "fail"


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    code: str = ""  # CHILD_FAILED or DEPENDENCY_FAILED when the verdict is FAIL


def verdict(waits_for: Iterable[tuple[str, str | None]], on_child_failure: str) -> Outcome:
    """What a job that waits should do now. ``waits_for``: (kind, state) of each job it
    waits for, state None for one that no longer exists (deleted: counts as failed)."""
    pending = False
    for kind, state in waits_for:
        failed = state is None or state in FAILED_FOR_GOOD
        if failed and kind == DependencyKind.DEPENDENCY:
            return Outcome(Verdict.FAIL, DEPENDENCY_FAILED)
        if failed and kind == DependencyKind.CHILD and on_child_failure == OnChildFailure.FAIL:
            return Outcome(Verdict.FAIL, CHILD_FAILED)
        if state in UNFINISHED:
            pending = True
    return Outcome(Verdict.WAIT) if pending else Outcome(Verdict.READY)


def watch_targets(ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Mark the jobs a new job will depend on as watched, and return their states (a
    job that no longer exists is missing), in one ``UPDATE ... RETURNING``: it waits for
    a transaction finishing one of them, then sees its finished state; a transaction
    finishing one after it sees ``watched`` (and, once this commits, the new job's
    JobDependency rows). So a dependency either settles the new job or is seen finished
    by it; nothing falls between them. (On SQLite the write lock serialises the two.)"""
    targets = list(ids)
    if not targets:
        return {}
    pk = Job._meta.pk
    assert pk is not None
    table = connection.ops.quote_name(Job._meta.db_table)
    marks = ", ".join(["%s"] * len(targets))
    sql = f"UPDATE {table} SET watched = %s WHERE id IN ({marks}) RETURNING id, state"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, [True, *(pk.get_db_prep_value(t, connection) for t in targets)])
        rows = cursor.fetchall()
    return {pk.to_python(job_id): str(state) for job_id, state in rows}


@dataclass
class Settled:
    """What settling changed, for the caller's audit event: jobs made ready, failed
    (child_failed or dependency_failed) and cancelled (children of a failed parent)."""

    ready: list[uuid.UUID] = field(default_factory=list)
    failed: list[uuid.UUID] = field(default_factory=list)
    cancelled: list[uuid.UUID] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.ready or self.failed or self.cancelled)

    @property
    def job_ids(self) -> list[uuid.UUID]:
        return [*self.ready, *self.failed, *self.cancelled]

    def details(self) -> dict[str, int]:
        """Counts for an audit event's details (the ids go in its job_ids)."""
        return {
            name: len(ids)
            for name, ids in (
                ("ready", self.ready),
                ("failed", self.failed),
                ("cancelled", self.cancelled),
            )
            if ids
        }


def notify_done(job_ids: Iterable[uuid.UUID]) -> None:
    """Wake clients waiting for these jobs (GET /jobs/{id}/wait): one NOTIFY each on
    ``DONE_CHANNEL``, sent at commit. PostgreSQL only; SQLite's waiters poll."""
    ids = [str(job_id) for job_id in job_ids]
    if ids and connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_notify(%s, x) FROM unnest(%s::text[]) AS x", [DONE_CHANNEL, ids]
            )


def jobs_finished(finished: Iterable[uuid.UUID], *, now: datetime) -> Settled:
    """Call inside the transaction that took these *watched* jobs to a finished state
    (the caller reads ``watched`` in a statement it runs anyway, and passes only those):
    wakes their waiting clients and settles the jobs that wait for them (see the module
    docstring). Returns what settling changed, for the caller's audit event."""
    ids = list(finished)
    settled = Settled()
    if not ids:
        return settled
    notify_done(ids)
    # TODO(i20-engine): settle the waiting jobs (lock, verdict, ready/fail/cancel,
    # cascade), and notify_done what that finishes in turn.
    del now
    return settled
