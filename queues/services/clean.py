"""Clean: delete finished jobs of some queues that finished before a time, in one
transaction with one audit event (``POST /queues/{pattern}/clean``, and each batch of a
retention run, compliance.retention). Queues under legal hold are never touched, only
reported. A flow's finished child whose parent is unfinished is never deleted: the parent
reads its children's results when it runs. A finished dependency is not kept: completed,
it blocks nothing (its JobDependency row goes with it, and the job that waited for it
waits for the rest); failed, it has failed what waited for it. Nor could it be kept
safely: anyone who may read a job can name it in depends_on, next to a job of their own
that never finishes, and would so keep another tenant's job from retention for ever."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet

from compliance.audit import Action, Actor, audit_record
from kernel import limits

from ..events.log import events_off
from ..models import FINISHED, UNFINISHED, DependencyKind, Job, JobDependency, Queue

MAX_CLEAN = limits.MAX_CLEAN_LIMIT


def finished_before(queue: Queue, state: str, cutoff: datetime) -> QuerySet[Job]:
    """Jobs of ``queue`` in the finished ``state`` that finished before ``cutoff``,
    but no child of an unfinished flow parent (only a watched job can be one, so only
    those pay for the check: jobdep_target_idx)."""
    waited_for = JobDependency.objects.filter(
        depends_on=OuterRef("pk"), kind=DependencyKind.CHILD, job__state__in=UNFINISHED
    )
    return (
        Job.objects.filter(queue=queue, state=state)
        .filter(Q(finished_at__lt=cutoff) | Q(finished_at__isnull=True, created_at__lt=cutoff))
        .filter(Q(watched=False) | ~Exists(waited_for))
    )


@dataclass(frozen=True)
class Cleaned:
    deleted: dict[str, dict[str, int]]  # queue -> state -> count
    held: list[str]

    @property
    def total(self) -> int:
        return sum(sum(states.values()) for states in self.deleted.values())


def jobs_clean(
    *,
    queues: Sequence[Queue],
    states: Sequence[str],
    finished_before_: datetime,
    limit: int,
    actor: Actor,
    skipped: Sequence[str] = (),
    reason: str = "",
    events: bool = True,
) -> Cleaned:
    """Delete up to ``limit`` jobs of ``queues`` in the finished ``states`` that
    finished before ``finished_before_``, oldest first (by id: creation order), in one
    transaction with one audit event. Queues under legal hold are skipped and reported.
    ``events=False`` (retention's housekeeping) writes no ``removed`` events to the job
    event log on PostgreSQL (``queues.events.log``)."""
    if not 1 <= limit <= MAX_CLEAN:
        raise ValueError(f"limit must be 1 to {MAX_CLEAN}")
    if not set(states) <= set(FINISHED):
        raise ValueError("only finished jobs (completed, failed, cancelled, expired) are cleaned")
    deleted: dict[str, dict[str, int]] = {}
    held = sorted(queue.name for queue in queues if queue.legal_hold)
    left = limit
    with transaction.atomic():
        if not events:
            events_off()
        for queue in sorted((q for q in queues if not q.legal_hold), key=lambda q: q.name):
            for state in states:
                if left == 0:
                    break
                ids = list(
                    finished_before(queue, state, finished_before_)
                    # Oldest first by the time-ordered id: job_queue_state_idx walks
                    # it, where finished_at (no index) meant sorting every finished job.
                    .order_by("id")
                    .select_for_update(skip_locked=True)
                    .values_list("id", flat=True)[:left]
                )
                if ids:
                    _delete_jobs(ids)
                    deleted.setdefault(queue.name, {})[state] = len(ids)
                    left -= len(ids)
        audit_record(
            actor=actor,
            action=Action.CLEAN,
            queue=queues[0].name if len(queues) == 1 else "",
            details={
                "finished_before": finished_before_.isoformat(),
                "states": list(states),
                "deleted": deleted,
                "held": held,
                **({"skipped": list(skipped)} if skipped else {}),
                **({"reason": reason} if reason else {}),
            },
        )
    return Cleaned(deleted=deleted, held=held)


def _delete_jobs(ids: list[Any]) -> None:
    """Delete the jobs ``ids`` (locked by the caller) in one statement, their dependency
    rows (the only rows that point at a job: the cascade) first. ``QuerySet.delete()``
    would fetch each whole row, sealed payloads and all, to collect it, and then delete
    100 ids a statement: at ten million jobs retention's batch of 1000 cost 13 statements
    and most of its time there (bench/tenmillion.py)."""
    JobDependency.objects.filter(Q(job_id__in=ids) | Q(depends_on_id__in=ids)).delete()
    Job.objects.filter(id__in=ids)._raw_delete(Job.objects.db)
