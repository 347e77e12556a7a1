"""Handing out work, and taking it back when a lease runs out.

``PullSpec`` leases ready jobs, one round (one transaction) at a time; a pull given
``wait`` that found nothing waits between rounds in queues.waiting, holding no
transaction, thread or connection meanwhile. A paused queue hands out nothing, and a
pause during a long poll stops it too (the queue is read each round, as remembered by
this process for at most QUEUE_CACHE_SECONDS: queues.queuecache). Jobs whose
lease expired or that ran past their deadline (``timeout``) are recovered by every pull
(for its queue) and by the sweeper; nobody asked for that change, so it is recorded
under a system actor, one event per batch and kind (``lease.recover``, ``timeout``)
listing the job ids."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from compliance.audit import Action, Actor, audit_record
from kernel.problems import FieldError
from kernel.ratelimit import Rate, rate_available, rate_charge
from kernel.statements import bound_objects
from security.fields import bulk_update_sealed

from . import claim, queuecache
from .backoff import retry_delay_ms
from .dependents import Settled, jobs_finished
from .errors import LeaseConflict
from .models import Job, JobState, Queue
from .services import (
    FAILURE_FIELDS,
    STALE_LEASE,
    Acked,
    AckSpec,
    check_acks,
    complete_acked,
    deadlock_retried,
    record_failure,
)

LEASE_EXPIRED = "lease expired"
LEASE_EXPIRED_CODE = "lease_expired"
TIMEOUT_CODE = "timeout"
LEASE_RECOVERY = "lease-recovery"


@deadlock_retried
def leases_requeue_expired(*, actor: Actor, queue_id: int | None = None, limit: int = 500) -> int:
    """Return up to ``limit`` jobs whose lease ran out to waiting, each as a failed
    attempt, or to failed when that was the last attempt. A job past its deadline (its
    ``timeout``) failed with code ``timeout`` and is retried after its backoff; any other
    expired lease ("lease expired") is retried at once: the lease itself was the wait."""
    with transaction.atomic():
        return _requeue_expired(actor=actor, queue_id=queue_id, limit=limit)


# Constant SQL, run by every pull: the ORM compiled this on each call. job_lease_idx
# holds active jobs by lease expiry; SQLite has no row locks (its transaction holds the
# write lock). The claim and heartbeats cap a lease at the job's deadline, so a job past
# its deadline is always among the expired leases.
_EXPIRED_SQL = (
    "SELECT * FROM queues_job WHERE state = 'active' AND lease_expires_at <= %s {queue} "
    "ORDER BY lease_expires_at LIMIT %s {lock}"
)


def _requeue_expired(*, actor: Actor, queue_id: int | None, limit: int) -> int:
    """leases_requeue_expired inside the caller's transaction: one event per kind of
    recovery in the batch (TIMEOUT for jobs past their deadline, LEASE_RECOVER for the
    others), each listing its job ids."""
    now = timezone.now()
    params: list[Any] = [connection.ops.adapt_datetimefield_value(now)]
    if queue_id is not None:
        params.append(queue_id)
    sql = _EXPIRED_SQL.format(
        queue="" if queue_id is None else "AND queue_id = %s",
        lock="FOR UPDATE SKIP LOCKED" if connection.vendor == "postgresql" else "",
    )
    if connection.vendor == "postgresql":  # no RawQuerySet for what is mostly no row
        jobs = bound_objects(Job, sql, [*params, limit])
    else:
        jobs = list(Job.objects.raw(sql, [*params, limit]))
    if not jobs:
        return 0
    timed_out: list[Job] = []
    expired: list[Job] = []
    for job in jobs:
        past_deadline = job.deadline_at is not None and job.deadline_at <= now
        (timed_out if past_deadline else expired).append(job)
    for job in timed_out:
        message = f"timed out after {job.timeout_ms} ms"
        delay = retry_delay_ms(job.backoff, job.attempts)
        record_failure(job, message, now=now, retry=True, delay_ms=delay, code=TIMEOUT_CODE)
    for job in expired:
        record_failure(job, LEASE_EXPIRED, now=now, retry=True, delay_ms=0, code=LEASE_EXPIRED_CODE)
    bulk_update_sealed(Job, jobs, FAILURE_FIELDS)
    _record_recovery(actor, Action.TIMEOUT, timed_out, now=now)
    _record_recovery(actor, Action.LEASE_RECOVER, expired, now=now)
    return len(jobs)


def _record_recovery(actor: Actor, action: Action, jobs: list[Job], *, now: datetime) -> None:
    """The batch's event, after settling what waits for the watched jobs it failed."""
    if not jobs:
        return
    failed = [job for job in jobs if job.state == JobState.FAILED]
    settled = jobs_finished([job.id for job in failed if job.watched], now=now)
    audit_record(
        actor=actor,
        action=action,
        queue=_single_queue_name(jobs),
        job_ids=[*(job.id for job in jobs), *settled.job_ids],
        details={
            "count": len(jobs),
            "waiting": len(jobs) - len(failed),
            "failed": len(failed),
            **settled.audit(),
        },
    )


@deadlock_retried
def jobs_expire_ttl(*, actor: Actor, limit: int = 5000) -> int:
    """Mark up to ``limit`` waiting jobs whose ttl ran out as expired (pull already
    skips them); what waits for the watched ones settles. (A job in waiting-children
    is not swept: it cannot start before its children finish, and when they do and its
    ttl has run out, settling expires it instead of making it ready.)"""
    now = timezone.now()
    with transaction.atomic():
        rows = list(
            Job.objects.filter(state=JobState.WAITING, expires_at__lte=now)
            .select_for_update(skip_locked=True)
            .values_list("id", "watched")[:limit]
        )
        if not rows:
            return 0
        ids = [job_id for job_id, _ in rows]
        Job.objects.filter(id__in=ids).update(state=JobState.EXPIRED, finished_at=now)
        settled = jobs_finished([job_id for job_id, watched in rows if watched], now=now)
        audit_record(
            actor=actor,
            action=Action.TTL_EXPIRE,
            job_ids=[*ids, *settled.job_ids],
            details={"count": len(ids), **settled.audit()},
        )
    return len(ids)


def _single_queue_name(jobs: list[Job]) -> str:
    queue_ids = {job.queue_id for job in jobs}
    if len(queue_ids) != 1:
        return ""
    names = Queue.objects.filter(id=queue_ids.pop()).values_list("name", flat=True)
    return names.first() or ""


def _queue_rate(queue: Queue) -> Rate:
    assert queue.rate_limit_max is not None and queue.rate_limit_duration_ms is not None
    return Rate(queue.rate_limit_max, queue.rate_limit_duration_ms / 1000)


def _rate_key(queue: Queue) -> str:
    return f"queue:{queue.pk}"


def _within_limits(queue: Queue, count: int) -> int:
    """How many of ``count`` jobs the queue's rate and concurrency limits let this pull
    hand out. A limited queue's row is locked for the rest of the transaction, so
    pullers on every app server take from its budget one at a time (an unlimited
    queue costs nothing here)."""
    if queue.rate_limit_max is None and queue.concurrency_max is None:
        return count
    # Lock the queue row: serialises pullers of a limited queue across app servers.
    list(Queue.objects.select_for_update().filter(pk=queue.pk).values_list("pk"))
    allowed = count
    if queue.concurrency_max is not None:
        active = Job.objects.filter(queue_id=queue.pk, state=JobState.ACTIVE).count()
        allowed = min(allowed, max(0, queue.concurrency_max - active))
    if queue.rate_limit_max is not None and allowed:
        allowed = min(allowed, rate_available(key=_rate_key(queue), rate=_queue_rate(queue)))
    return allowed


# What a pull needs of its queue, as this process remembers it (queues.queuecache).
_PULL_QUEUE_FIELDS = frozenset(
    {
        "id", "name", "paused", "rate_limit_max", "rate_limit_duration_ms", "concurrency_max",
        "grouped", "group_concurrency",
    }
)  # fmt: skip


@deadlock_retried
def _claim_round(spec: PullSpec, *, last: bool, acks: Sequence[AckSpec] = ()) -> list[Job] | None:
    """One attempt, in one transaction: the leased jobs, or None when there were none
    and this is not the last round (so nothing is recorded yet, unless ``acks`` were
    completed: they are recorded with the round that completes them)."""
    queue_name, count, owner, actor = spec.queue_name, spec.count, spec.owner, spec.actor
    lease_seconds = spec.lease_seconds
    with transaction.atomic():
        queue = queuecache.queue_named(queue_name, _PULL_QUEUE_FIELDS)
        jobs: list[Job] = []
        acked = Acked(set(), Settled())
        if acks:
            if queue is None:
                raise LeaseConflict(STALE_LEASE, errors=_stale(acks))
            acked = complete_acked(
                acks, owner=owner, now=timezone.now(), queue_id=queue.pk, root=ACKS
            )
        if queue is not None and not queue.paused:
            recovery = Actor.system(LEASE_RECOVERY, request_id=actor.request_id)
            _requeue_expired(actor=recovery, queue_id=queue.pk, limit=500)
            allowed = _within_limits(queue, count)
            if allowed:
                jobs = claim.claim(
                    queue_id=queue.pk,
                    count=allowed,
                    lease_seconds=lease_seconds,
                    owner=owner,
                    now=timezone.now(),
                    group_concurrency=queue.group_concurrency if queue.grouped else None,
                )
            if jobs and queue.rate_limit_max is not None:
                rate_charge(key=_rate_key(queue), rate=_queue_rate(queue), cost=len(jobs))
        if not jobs and not last and not acks:
            return None
        # Acked jobs first, then the leased ones, then what the acks settled; details
        # say how many were acked (and how many of those were replays).
        audit_record(
            actor=actor,
            action=Action.PULL,
            queue=queue_name,
            job_ids=[
                *(ack.job_id for ack in acks),
                *(job.id for job in jobs),
                *acked.settled.job_ids,
            ],
            details={"acked": len(acks), **acked.audit()} if acks else None,
        )
    return jobs if jobs or last else None


ACKS = "/ack"


def _stale(acks: Sequence[AckSpec]) -> list[FieldError]:
    return [
        FieldError(f"{ACKS}/{index}/lease_id", "is not the job's current lease")
        for index in range(len(acks))
    ]


class Pulled(list[Job]):
    """A pull's leased jobs. ``retry_after_s`` is set when there are none and the pull
    would have waited, but this process already holds as many long polls as it allows
    (in all, or for the caller's token family): the caller should not ask again before
    that many seconds. (A worker that got jobs comes back when it has done them.)"""

    retry_after_s: int | None = None


@dataclass(frozen=True)
class PullSpec:
    """What a pull asks for, round after round (a waiting pull's rounds are run by
    queues.waiting.PullWait)."""

    queue_name: str
    count: int
    lease_seconds: int
    owner: str
    actor: Actor

    def claim(self, *, last: bool, acks: Sequence[AckSpec] = ()) -> list[Job] | None:
        return _claim_round(self, last=last, acks=acks)

    def begin(self, *, acks: Sequence[AckSpec] = (), then_wait: bool = False) -> Pulled | None:
        """The first round: up to ``count`` ready jobs of the queue leased to ``owner``
        (highest priority first), and one pull event listing them. An unknown queue has
        nothing to hand out yet. With ``then_wait``, None when nothing was ready: the
        caller waits (queues.waiting.PullWait), and the event comes with a later round.

        ``acks`` (a worker's previous batch from this queue) are completed, all or
        nothing, in the same transaction, and listed first in its event. If it finds
        nothing and the pull goes on waiting, the acks commit with an event of their own
        at once, and whatever a later round hands out gets a second event."""
        check_acks(acks, root=ACKS)
        jobs = self.claim(last=not then_wait, acks=acks)
        return None if jobs is None else Pulled(jobs)

    def nothing(self) -> Pulled:
        """The call's event when its wait ended and nothing came: as the last round
        records it when it leases nothing (no claim: a waiter not woken since its last
        look knows there is nothing new, queues.notifier)."""
        audit_record(actor=self.actor, action=Action.PULL, queue=self.queue_name, job_ids=[])
        return Pulled()

    def abandon(self) -> None:
        """The call's event when its client hung up while it waited: nothing handed
        out (its next round would have leased jobs to nobody)."""
        audit_record(
            actor=self.actor,
            action=Action.PULL,
            queue=self.queue_name,
            details={"client": "disconnected"},
        )


def jobs_pull(
    *,
    queue_name: str,
    count: int,
    lease_seconds: int,
    owner: str,
    actor: Actor,
    acks: Sequence[AckSpec] = (),
) -> Pulled:
    """A pull that does not wait (``PullSpec.begin``)."""
    spec = PullSpec(queue_name, count, lease_seconds, owner, actor)
    pulled = spec.begin(acks=acks)
    assert pulled is not None  # the round was its last
    return pulled


def sweep(*, actor: Actor) -> tuple[int, int]:
    """Recover every expired lease and expire every waiting job past its ttl, batch by
    batch (each batch its own transaction and event): (requeued, expired)."""
    requeued = expired = 0
    while batch := leases_requeue_expired(actor=actor):
        requeued += batch
    while batch := jobs_expire_ttl(actor=actor):
        expired += batch
    return requeued, expired
