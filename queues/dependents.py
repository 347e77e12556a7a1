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
parent's lock sees them all, so the parent becomes ready exactly once. What settling
finishes in turn (a failed parent, its cancelled children) settles what waits for it,
round after round (``Settled`` lists it all for the caller's one event).

Locks go up a flow: a child, then the jobs waiting for it, each level in id order.
Cancelling goes down (``jobs_withdrawn``: a cancelled, expired or deleted job's
unfinished children, every level down), so ``lock_below`` takes those locks deepest
level first, and a cancel takes them before the job itself; a child that fails for good
locks its siblings ahead of the parent it fails (``_lock_ahead``). What is left (jobs
tied across flows by dependencies) PostgreSQL breaks as a deadlock, and the services
run the loser again (services.common.deadlock_retried).

A push with ``depends_on`` marks its targets watched with an UPDATE that returns their
states (``watch_targets``): either a finishing transaction saw the mark, or the push saw
the finished state; nothing falls between them.

Settling takes a round per level in one transaction, so a push is refused past
``MAX_WAIT_DEPTH``: a job's ``depth`` (``wait_depth``, from the depths that UPDATE
returns) is counted at its push, and edges are never added later, so it bounds the rounds.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

from django.db import connection
from django.db.models import Case, F, PositiveSmallIntegerField, When

from security.fields import bulk_update_sealed

from . import wakeup
from .failures import FAILURE_FIELDS, cancellation, record_failure
from .models import (
    FAILED_FOR_GOOD,
    UNFINISHED,
    DependencyKind,
    Job,
    JobDependency,
    JobState,
    OnChildFailure,
)

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


class Target(NamedTuple):
    """A job a new job will depend on, as ``watch_targets`` found it."""

    state: str
    depth: int


def wait_depth(targets: Iterable[Target]) -> int:
    """The depth of a job that waits for ``targets`` (Job.depth): 1 + the deepest of
    them, counting only those not completed (a completed job is not waited on, now or
    ever: nothing takes it back), so 0 when every one has completed. (A flow's parent
    has 1 + its deepest child's: services.flows.)"""
    return max(
        (1 + target.depth for target in targets if target.state != JobState.COMPLETED), default=0
    )


def watch_targets(ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Target]:
    """Mark the jobs a new job will depend on as watched, and return their states and
    depths (a job that no longer exists is missing), in one ``UPDATE ... RETURNING``:
    it waits for a transaction finishing one of them, then sees its finished state; a
    transaction finishing one after it sees ``watched`` (and, once this commits, the new
    job's JobDependency rows). So a dependency either settles the new job or is seen
    finished by it; nothing falls between them. (SQLite's write lock serialises them.)"""
    targets = list(ids)
    if not targets:
        return {}
    pk = Job._meta.pk
    assert pk is not None
    table = connection.ops.quote_name(Job._meta.db_table)
    marks = ", ".join(["%s"] * len(targets))
    sql = f"UPDATE {table} SET watched = %s WHERE id IN ({marks}) RETURNING id, state, depth"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, [True, *(pk.get_db_prep_value(t, connection) for t in targets)])
        rows = cursor.fetchall()
    return {pk.to_python(job_id): Target(str(state), depth) for job_id, state, depth in rows}


@dataclass
class Settled:
    """What settling changed, for the caller's audit event: jobs made ready, failed
    (child_failed or dependency_failed), cancelled (the unfinished children of a failed
    or cancelled parent, every level down) and expired (ready past their ttl)."""

    ready: list[uuid.UUID] = field(default_factory=list)
    failed: list[uuid.UUID] = field(default_factory=list)
    cancelled: list[uuid.UUID] = field(default_factory=list)
    expired: list[uuid.UUID] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.ready or self.failed or self.cancelled or self.expired)

    @property
    def job_ids(self) -> list[uuid.UUID]:
        return [*self.ready, *self.failed, *self.cancelled, *self.expired]

    def audit(self) -> dict[str, Any]:
        """``{"settled": {name: count}}`` for the caller's event details (the ids go in
        its job_ids), or nothing when settling changed nothing."""
        counts = {
            "ready": len(self.ready),
            "failed": len(self.failed),
            "cancelled": len(self.cancelled),
            "expired": len(self.expired),
        }
        return {"settled": {name: n for name, n in counts.items() if n}} if self else {}


def notify_done(job_ids: Iterable[uuid.UUID]) -> None:
    """Wake clients waiting for these jobs (GET /jobs/{id}/wait): one NOTIFY each on
    ``DONE_CHANNEL``, sent at commit. PostgreSQL only; SQLite's waiters poll."""
    ids = [str(job_id) for job_id in job_ids]
    if ids and connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_notify(%s, x) FROM unnest(%s::text[]) AS x", [DONE_CHANNEL, ids]
            )


def jobs_finished(
    finished: Iterable[uuid.UUID], *, now: datetime, completed: bool = False
) -> Settled:
    """Call inside the transaction that took these *watched* jobs to a finished state
    (the caller reads ``watched`` in a statement it runs anyway, and passes only those):
    wakes their waiting clients and settles the jobs that wait for them (see the module
    docstring). ``completed``: every one of them completed (an ack), so none can fail a
    parent, and settling skips locking ahead for that. Returns what settling changed,
    for the caller's audit event."""
    settled = Settled()
    _settle(list(finished), now=now, settled=settled, completed=completed)
    return settled


def jobs_withdrawn(
    withdrawn: Iterable[uuid.UUID],
    *,
    watched: Iterable[uuid.UUID],
    now: datetime,
    below: Below | None = None,
) -> Settled:
    """Call inside the transaction that took these jobs out unfinished (cancelled,
    expired, or cancelled just before a delete): their unfinished children are
    cancelled, every level down, and whatever waits for the watched ones (``watched``,
    those of ``withdrawn`` that are) or for those children settles. ``below``: those
    children, if the caller locked them (``lock_below``) before the withdrawn jobs."""
    settled = Settled()
    if below is None:
        below = lock_below(withdrawn)
    cancelled, cancelled_watched = _cancel(below, now=now)
    settled.cancelled += cancelled
    _settle([*watched, *cancelled_watched], now=now, settled=settled)
    return settled


def _settle(
    finished: list[uuid.UUID], *, now: datetime, settled: Settled, completed: bool = False
) -> None:
    """Settle round by round: what one round finishes (failed waiting jobs, cancelled
    children) and is watched is the next round's, up a flow and along dependencies."""
    while finished:
        notify_done(finished)
        if not completed:
            _lock_ahead(finished)
        finished = _settle_round(finished, now=now, settled=settled)
        completed = False  # what a round finishes failed, expired or was cancelled


def _lock_ahead(finished: list[uuid.UUID]) -> None:
    """A child that failed for good fails its waiting parent under ``fail``, which then
    cancels its other children. Lock those first, before the parent, as every finishing
    path does (a child, then the jobs waiting for it): a sibling acked meanwhile then
    waits for this transaction instead of deadlocking with it."""
    parents = JobDependency.objects.filter(
        depends_on__in=finished,
        kind=DependencyKind.CHILD,
        job__state=JobState.WAITING_CHILDREN,
        job__on_child_failure=OnChildFailure.FAIL,
    ).values_list("job_id", flat=True)
    lock_below(dict.fromkeys(parents))


_DEPTH: PositiveSmallIntegerField[int, int] = PositiveSmallIntegerField()  # Job.depth
# (waiting job, what it waits for, kind, that job's state)
_Edge = tuple[uuid.UUID, uuid.UUID, str, str]


def _settle_round(finished: list[uuid.UUID], *, now: datetime, settled: Settled) -> list[uuid.UUID]:
    """The jobs waiting for ``finished``, settled; returns the watched jobs this
    finished in turn. Locks first (in id order: every finishing path locks the finished
    job, then the jobs waiting for it), then reads what each waits for in a statement of
    its own: on PostgreSQL (READ COMMITTED) it sees every transaction that committed
    before the lock was granted, so of several children finishing at once the last to
    lock their parent sees them all finished, and the parent is made ready once."""
    # jobdep_target_idx finds the waiting jobs; state re-checked once each lock is held.
    waiting = list(
        Job.objects.select_for_update(of=("self",))
        .filter(
            state=JobState.WAITING_CHILDREN,
            id__in=JobDependency.objects.filter(depends_on__in=finished).values("job_id"),
        )
        .order_by("id")
        .values_list("id", "on_child_failure", "expires_at", "watched", "queue__name")
    )
    if not waiting:
        return []
    edges: dict[uuid.UUID, list[_Edge]] = {}
    # jobdep_job_target_uniq: what each waits for, with its state as committed now.
    for edge in JobDependency.objects.filter(job_id__in=[row[0] for row in waiting]).values_list(
        "job_id", "depends_on_id", "kind", "depends_on__state"
    ):
        edges.setdefault(edge[0], []).append(edge)
    ready: dict[uuid.UUID, str] = {}
    expired: list[tuple[uuid.UUID, bool]] = []
    failing: dict[uuid.UUID, tuple[str, str]] = {}
    for job_id, policy, expires_at, watched, queue in waiting:
        waits = edges.get(job_id, [])
        outcome = verdict(((kind, state) for _, _, kind, state in waits), policy)
        if outcome.verdict == Verdict.READY and expires_at is not None and expires_at <= now:
            expired.append((job_id, watched))  # its ttl ran out while it waited
        elif outcome.verdict == Verdict.READY:
            ready[job_id] = queue
        elif outcome.verdict == Verdict.FAIL:
            failing[job_id] = (outcome.code, _failure_text(outcome.code, waits))
    finished_now: list[uuid.UUID] = []
    if ready:
        # A job with depends_on made ready waits for nothing, now or ever: depth 0. A
        # flow's parent keeps its depth: a retry may make it wait for its children again.
        flat = [j for j in ready if all(e[2] != DependencyKind.CHILD for e in edges.get(j, []))]
        Job.objects.filter(id__in=list(ready)).update(
            state=JobState.WAITING,
            depth=Case(When(id__in=flat, then=0), default=F("depth"), output_field=_DEPTH),
        )
        for queue in sorted(set(ready.values())):
            wakeup.notify_ready(queue)
        settled.ready += ready
    if expired:
        ids = [job_id for job_id, _ in expired]
        Job.objects.filter(id__in=ids).update(state=JobState.EXPIRED, finished_at=now)
        settled.expired += ids
        finished_now += [job_id for job_id, watched in expired if watched]
    if failing:
        finished_now += _fail(failing, now=now)
        settled.failed += failing
        parents = [job_id for job_id, (code, _) in failing.items() if code == CHILD_FAILED]
        # Locked ahead (_lock_ahead) but for children a concurrent retry woke since.
        cancelled, cancelled_watched = _cancel(lock_below(parents), now=now)
        settled.cancelled += cancelled
        finished_now += cancelled_watched
    return finished_now


def _failure_text(code: str, waits: list[_Edge]) -> str:
    """Names the job that failed and its state (never anything of its payload)."""
    kind = DependencyKind.CHILD if code == CHILD_FAILED else DependencyKind.DEPENDENCY
    target, state = next(
        (target, state)
        for _, target, edge_kind, state in waits
        if edge_kind == kind and state in FAILED_FOR_GOOD
    )
    what = "a child job" if kind == DependencyKind.CHILD else "a job it depends on"
    return f"{what} failed: {target} ({state})"


def _fail(failing: dict[uuid.UUID, tuple[str, str]], *, now: datetime) -> list[uuid.UUID]:
    """Fail the (locked) waiting jobs with their code and text, in their error history
    like any failure; returns the watched ones."""
    jobs = list(Job.objects.filter(id__in=list(failing)).order_by("id"))
    for job in jobs:
        code, text = failing[job.id]
        record_failure(job, text, now=now, retry=False, delay_ms=0, code=code)
    bulk_update_sealed(Job, jobs, FAILURE_FIELDS)
    return [job.id for job in jobs if job.watched]


# (id, watched) of an unfinished job under a parent, locked (lock_below).
Below = list[tuple[uuid.UUID, bool]]


def lock_below(parents: Iterable[uuid.UUID]) -> Below:
    """The unfinished jobs under ``parents``, every level down (child edges), locked
    deepest level first and in id order within a level: the order every finishing path
    takes its locks in (a child, then the jobs waiting for it). A cancel that locks
    these before the parent itself cannot deadlock with an ack coming up the tree."""
    levels: list[list[uuid.UUID]] = []
    seen = set(parents)
    level = list(seen)
    while level:
        # jobdep_job_target_uniq: a parent's children.
        below = JobDependency.objects.filter(
            job_id__in=level, kind=DependencyKind.CHILD, depends_on__state__in=UNFINISHED
        ).values_list("depends_on_id", flat=True)
        level = [child for child in dict.fromkeys(below) if child not in seen]
        seen.update(level)
        if level:
            levels.append(level)
    locked: Below = []
    for ids in reversed(levels):
        locked += (
            Job.objects.select_for_update(of=("self",))
            .filter(id__in=ids, state__in=UNFINISHED)
            .order_by("id")
            .values_list("id", "watched")
        )
    return locked


def _cancel(below: Below, *, now: datetime) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """Cancel ``below`` (an active one's lease is void from then on: its worker's ack is
    a 409). Returns (cancelled, the watched among them)."""
    ids = [job_id for job_id, _ in below]
    if ids:
        Job.objects.filter(id__in=ids).update(**cancellation(now))
    return ids, [job_id for job_id, watched in below if watched]
