"""What workers report on the jobs they hold: ack (one or a batch), fail and progress,
each checked against the live lease. Pull (queues.pulling) uses ``check_acks`` and
``complete_acked`` from here. A watched job that finishes settles what waits for it
(queues.dependents) in the same transaction, listed in the same event.

An ack is safe to repeat: the lease that completed a job stays on its row (``lease_id``
and ``lease_owner``; nothing reads a lease without ``state = 'active'``), and for
FLASHQ_ACK_REPLAY_SECONDS from ``finished_at`` the same ack from the same token family
is answered as the first was, changing nothing (its result ignored), and audited as a
replay. A retry of the job or an erasure clears the kept lease."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from compliance.audit import Action, Actor, audit_record
from kernel import limits
from kernel.problems import (
    FieldError,
    PayloadTooLarge,
)
from security.encryption import seal
from security.fields import Sealed, bulk_update_sealed

from ..backoff import retry_delay_ms
from ..dependents import Settled, jobs_finished
from ..errors import LeaseConflict
from ..failures import FAILURE_FIELDS, record_failure
from ..jobspec import encoded_size, payload_shape
from ..models import Job, JobState, Queue
from .common import deadlock_retried, job_get, refuse_cards

STALE_LEASE = "The lease is not the job's current lease, it has expired, or another token holds it."


@dataclass(frozen=True)
class AckSpec:
    job_id: uuid.UUID
    lease_id: uuid.UUID
    result: Any = None


def _completion(now: datetime) -> dict[str, Any]:
    """What an ack sets: ``lease_id`` and ``lease_owner`` are kept, for ``_replayed``."""
    return {
        "state": JobState.COMPLETED,
        "finished_at": now,
        "lease_expires_at": None,
        "deadline_at": None,
    }


def _replayed(job_ids: Sequence[uuid.UUID], owner: str, now: datetime) -> Any:
    """The jobs of ``job_ids`` that a lease of ``owner`` completed within the replay
    window: an ack presenting that lease again is a replay, not a conflict."""
    window = timedelta(seconds=settings.FLASHQ_ACK_REPLAY_SECONDS)
    return Job.objects.filter(
        id__in=job_ids, state=JobState.COMPLETED, lease_owner=owner, finished_at__gt=now - window
    )


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


@deadlock_retried
def job_ack(
    *, job_id: uuid.UUID, lease_id: uuid.UUID, owner: str, result: Any = None, actor: Actor
) -> Job:
    """Complete a job whose lease is current and ``owner``'s; returns it as stored. The
    same ack again, once that lease completed it, returns it too (``_ack_replayed``)."""
    _check_result_sizes([("/result", result)])
    refuse_cards([("/result", result)])
    now = timezone.now()
    with transaction.atomic():
        live = _live_lease(job_id, lease_id, owner, now)
        sealed = None if result is None else Sealed.of(result, pk=job_id, field="result")
        if live.update(result=sealed, **_completion(now)):
            job = job_get(job_id)
            # ``watched`` comes with the row just read: an unwatched job costs nothing more.
            settled = jobs_finished([job_id] if job.watched else [], now=now, completed=True)
            details = settled.audit() or None
        else:
            job = _ack_replayed(job_id, lease_id, owner, now)
            settled, details = Settled(), {"replay": True}
        audit_record(
            actor=actor,
            action=Action.ACK,
            queue=job.queue.name,
            job_ids=[job_id, *settled.job_ids],
            details=details,
        )
    return job


def _ack_replayed(job_id: uuid.UUID, lease_id: uuid.UUID, owner: str, now: datetime) -> Job:
    """A single ack whose lease is not live: the job as the first ack returned it, if
    this lease completed it within the window (the caller audits it as a replay), else
    a conflict."""
    job: Job | None = (
        _replayed([job_id], owner, now).filter(lease_id=lease_id).select_related("queue").first()
    )
    if job is None:
        raise LeaseConflict(STALE_LEASE)
    return job


def check_acks(acks: Sequence[AckSpec], *, root: str = "/jobs") -> None:
    """What can be refused before any write: result sizes and card numbers."""
    results = [(f"{root}/{i}/result", ack.result) for i, ack in enumerate(acks)]
    _check_result_sizes(results)
    refuse_cards(results)


@dataclass(frozen=True)
class Acked:
    queues: set[str]  # the names of the acked jobs' queues
    settled: Settled  # what settling the watched ones changed
    replayed: int = 0  # how many acks were replays (their jobs already completed)

    def audit(self) -> dict[str, Any]:
        """The acks' part of the call's audit details."""
        return {**({"replayed": self.replayed} if self.replayed else {}), **self.settled.audit()}


def complete_acked(
    acks: Sequence[AckSpec],
    *,
    owner: str,
    now: datetime,
    queue_id: int | None = None,
    root: str = "/jobs",
) -> Acked:
    """Complete ``acks`` in the caller's transaction, all or nothing (a pull with
    piggy-backed acks calls this too, limited to its queue): one stale or foreign lease
    and none is acked, and the LeaseConflict names each offending item. An ack of a job
    its lease already completed (``_replayed``) counts as acked and changes nothing.
    The watched ones settle what waits for them."""
    if connection.vendor == "postgresql":
        rows = _complete_live(acks, owner=owner, now=now, queue_id=queue_id)
    else:
        rows = _complete_live_orm(acks, owner=owner, now=now, queue_id=queue_id)
    done = {job_id for job_id, _, _ in rows}
    fresh = [ack for ack in acks if ack.job_id in done]
    # A stale ack raises here, after the fresh ones were written: the caller's
    # transaction (jobs_ack's, the pull round's) rolls them back.
    replays = _batch_replays(acks, fresh, owner, now, queue_id, root)
    watched = [job_id for job_id, _, is_watched in rows if is_watched]
    settled = jobs_finished(watched, now=now, completed=True)
    return Acked({queue for _, queue, _ in rows} | replays, settled, len(acks) - len(fresh))


Completed = list[tuple[uuid.UUID, str, bool]]  # id, queue name, watched


def _complete_live(
    acks: Sequence[AckSpec], *, owner: str, now: datetime, queue_id: int | None
) -> Completed:
    """PostgreSQL: complete the acks whose lease is live and ``owner``'s in one
    statement, their results sealed into it, the rows locked in id order first (as the
    SELECT ... FOR UPDATE before it did: concurrent batches lock alike). An ack without
    a result stores none, as a single ack does: a rerun job's last result is not kept
    as this run's."""
    quote = connection.ops.quote_name
    ordered = sorted(acks, key=lambda ack: ack.job_id)
    completion = _completion(now)
    columns = ", ".join(f"{quote(name)} = %s" for name in completion)  # names are columns
    in_queue = "" if queue_id is None else "AND j.queue_id = %s"
    sql = f"""
        WITH ack AS (
            SELECT * FROM unnest(%s::uuid[], %s::uuid[], %s::bytea[]) AS a(id, lease_id, result)
        ), live AS (
            SELECT j.id, ack.result FROM {quote(Job._meta.db_table)} j
            JOIN ack ON ack.id = j.id AND ack.lease_id = j.lease_id
            WHERE j.state = %s AND j.lease_owner = %s AND j.lease_expires_at > %s {in_queue}
            ORDER BY j.id FOR UPDATE OF j
        )
        UPDATE {quote(Job._meta.db_table)} j
        SET {columns}, result = live.result
        FROM live, {quote(Queue._meta.db_table)} q
        WHERE j.id = live.id AND q.id = j.queue_id
        RETURNING j.id, q.name, j.watched
    """  # noqa: S608 (names from the models)
    params: list[Any] = [
        [ack.job_id for ack in ordered],
        [ack.lease_id for ack in ordered],
        [
            None if ack.result is None else seal(ack.result, job_id=ack.job_id, field="result")
            for ack in ordered
        ],
        JobState.ACTIVE,
        owner,
        now,
        *([] if queue_id is None else [queue_id]),
        *completion.values(),
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [(job_id, name, watched) for job_id, name, watched in cursor.fetchall()]


def _complete_live_orm(
    acks: Sequence[AckSpec], *, owner: str, now: datetime, queue_id: int | None
) -> Completed:
    """``_complete_live`` in three statements, for SQLite: lock, update, results."""
    ids = [ack.job_id for ack in acks]
    leased = Job.objects.select_for_update(of=("self",)).filter(
        id__in=ids, state=JobState.ACTIVE, lease_owner=owner, lease_expires_at__gt=now
    )
    if queue_id is not None:
        leased = leased.filter(queue_id=queue_id)
    rows = list(leased.order_by("id").values_list("id", "lease_id", "queue__name", "watched"))
    leases = {job_id: lease for job_id, lease, _, _ in rows}
    fresh = [ack for ack in acks if leases.get(ack.job_id) == ack.lease_id]
    if fresh:
        # result=None: an ack without one leaves none (a rerun's last result goes).
        Job.objects.filter(id__in=[ack.job_id for ack in fresh]).update(
            result=None, **_completion(now)
        )
    with_result = [Job(id=ack.job_id, result=ack.result) for ack in fresh if ack.result is not None]
    if with_result:
        bulk_update_sealed(Job, with_result, ["result"])
    live = {ack.job_id for ack in fresh}
    return [(job_id, queue, watched) for job_id, _, queue, watched in rows if job_id in live]


def _batch_replays(
    acks: Sequence[AckSpec],
    fresh: Sequence[AckSpec],
    owner: str,
    now: datetime,
    queue_id: int | None,
    root: str,
) -> set[str]:
    """The queues of the acks beside ``fresh`` (those of live leases), once each is a
    replay; else the LeaseConflict naming every other item. One query, and only when
    some ack is not fresh."""
    if len(fresh) == len(acks):
        return set()
    done = {ack.job_id for ack in fresh}
    replayed = _replayed([ack.job_id for ack in acks if ack.job_id not in done], owner, now)
    if queue_id is not None:
        replayed = replayed.filter(queue_id=queue_id)
    kept = {
        job_id: (lease, queue)
        for job_id, lease, queue in replayed.values_list("id", "lease_id", "queue__name")
    }
    stale = [
        FieldError(f"{root}/{index}/lease_id", "is not the job's current lease")
        for index, ack in enumerate(acks)
        if ack.job_id not in done and kept.get(ack.job_id, (None, ""))[0] != ack.lease_id
    ]
    if stale:
        raise LeaseConflict(STALE_LEASE, errors=stale)
    return {queue for _, queue in kept.values()}


@deadlock_retried
def jobs_ack(*, acks: Sequence[AckSpec], owner: str, actor: Actor) -> None:
    """Complete many jobs, all or nothing: one stale or foreign lease and none is
    acked, and the error names each offending item."""
    check_acks(acks)
    now = timezone.now()
    with transaction.atomic():
        acked = complete_acked(acks, owner=owner, now=now)
        queues = acked.queues
        audit_record(
            actor=actor,
            action=Action.ACK,
            queue=next(iter(queues)) if len(queues) == 1 else "",
            job_ids=[*(ack.job_id for ack in acks), *acked.settled.job_ids],
            details={"count": len(acks), **acked.audit()},
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


@deadlock_retried
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
    refuse_cards([("/error", error), ("/code", code)])
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
        failed = job.state == JobState.FAILED and job.watched
        settled = jobs_finished([job_id], now=now) if failed else Settled()
        audit_record(
            actor=actor,
            action=Action.FAIL,
            queue=job.queue.name,
            job_ids=[job_id, *settled.job_ids],
            details={"state": str(job.state), "attempt": job.attempts, **settled.audit()},
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
    """Report progress; also a heartbeat that extends the lease by its length, but never
    past the job's deadline (its ``timeout`` from the claim): at the deadline the lease
    has run out, so the heartbeat is refused like any stale lease. The message is kept
    in clear (and masked without reveal): no card number in it."""
    refuse_cards([("/message", message)])
    now = timezone.now()
    with transaction.atomic():
        job = _leased_for_update(job_id, lease_id, owner, now)
        job.progress = progress
        job.progress_message = message[: limits.MAX_PROGRESS_MESSAGE]
        extended = now + timedelta(seconds=job.lease_seconds)
        if job.deadline_at is not None:
            extended = min(extended, job.deadline_at)
        job.lease_expires_at = extended
        job.save(update_fields=["progress", "progress_message", "lease_expires_at"])
        audit_record(
            actor=actor,
            action=Action.PROGRESS,
            queue=job.queue.name,
            job_ids=[job_id],
            details={"progress": progress},
        )
    return job
