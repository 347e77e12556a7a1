"""The tick engine: each due schedule, locked alone in its own transaction, pushes one
job per tick it fires (through the push's own path: schema, card guard, encryption)
keyed ``schedule:<name>:<tick in UTC>``, and moves ``next_run_at`` past ``now``, with
one ``schedule.fire`` event; the job, the move and the event commit together or not at
all. So a tick makes exactly one job however many firers run (PostgreSQL: ``FOR UPDATE
SKIP LOCKED``, a firer never waits on a schedule another is firing; SQLite: every
transaction is IMMEDIATE, so firers take turns), a firer killed mid-tick leaves the tick
to the next one (its transaction rolled back), and a clock that jumps back finds
nothing due (``next_run_at`` only moves forward, under the lock).

Ticks missed while nothing fired (a gap) are handled by the schedule's ``catch_up``:
``latest`` fires the most recent due tick, ``all`` each due tick (the most recent
``max_catch_up``), ``none`` only a tick still on time: at most ON_TIME_GRACE late."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from compliance.audit import Action, Actor, audit_event, audit_insert, audit_inserted
from compliance.audit.models import AuditEvent
from kernel.problems import FlashqError
from security.cards import find_cards, find_cards_in_text
from security.encryption import DecryptionFailed
from security.selectors import owner_live

from ..errors import OwnerRevoked
from ..jobspec import JobSpec, encoded_size
from ..models import CatchUp, Schedule
from ..schedulespec import next_tick, tick_key, ticks_between
from .push import Pushed, _push_into

logger = logging.getLogger("flashq.schedules")

# A tick of a ``catch_up: none`` schedule still fires when it is at most this late: the
# scheduler process looks every second, and django-q2's safety net every minute.
ON_TIME_GRACE = timedelta(seconds=90)
_STEP = timedelta(microseconds=1)


def template_spec(schedule: Schedule, *, key: str | None) -> JobSpec:
    """The job a tick of ``schedule`` pushes. Card findings are taken afresh: the
    queue's allow-list is applied when the job is pushed, as for any push."""
    data = schedule.data
    tags = [(f"tags/{index}", tag) for index, tag in enumerate(schedule.tags)]
    texts = [("subject", schedule.subject), *tags]
    return JobSpec(
        data=data,
        priority=schedule.priority,
        max_attempts=schedule.max_attempts,
        backoff=dict(schedule.backoff),
        timeout_ms=schedule.timeout_ms,
        key=key,
        subject=schedule.subject,
        tags=tuple(schedule.tags),
        card_findings=(
            *find_cards(data, "/data"),
            *(f for name, text in texts if text for f in find_cards_in_text(text, f"/{name}")),
        ),
        data_path="/data",
        data_bytes=encoded_size(data),
    )


def push_ticks(
    schedule: Schedule, specs: Sequence[JobSpec], now: datetime, event: AuditEvent
) -> list[Pushed]:
    """Push ``specs`` into the schedule's queue as its owner's jobs, written with
    ``event`` (which is given their ids)."""

    def record(results: list[Pushed]) -> AuditEvent:
        event.job_ids = [str(pushed.job.id) for pushed in results]
        return event

    return _push_into(schedule.queue, specs, now, schedule.created_by, record)


def _due(schedule: Schedule, now: datetime) -> tuple[list[datetime], int]:
    """The ticks to fire now, oldest first, and how many due ticks are skipped."""
    assert schedule.next_run_at is not None  # selected by it
    after = schedule.next_run_at - _STEP  # next_run_at is itself the first unfired tick
    keep = schedule.max_catch_up if schedule.catch_up == CatchUp.ALL else 1
    ticks, count = ticks_between(schedule, after, now, last=keep)
    if schedule.catch_up == CatchUp.NONE:
        ticks = [tick for tick in ticks if tick >= now - ON_TIME_GRACE]
    return ticks, count - len(ticks)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _write(event: AuditEvent) -> None:
    sql, params = audit_insert(event)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        [(pk,)] = cursor.fetchall()
    audit_inserted(event, pk)


def _fire_one(schedule: Schedule, now: datetime, actor: Actor) -> int:
    """Fire ``schedule``'s due ticks (inside the caller's transaction, row locked);
    the number of jobs pushed."""
    ticks, skipped = _due(schedule, now)
    details = {
        "name": schedule.name,
        "ticks": [_iso(tick) for tick in ticks],
        "fired": len(ticks),
        "skipped": skipped,
    }
    event = audit_event(
        actor=actor,
        action=Action.SCHEDULE_FIRE,
        status=201,
        queue=schedule.queue.name,
        details=details,
    )
    pushed: list[Pushed] = []
    if ticks:
        try:
            if not owner_live(schedule.created_by, now=now):
                raise OwnerRevoked()
            specs = [template_spec(schedule, key=tick_key(schedule.name, t)) for t in ticks]
            with transaction.atomic():
                pushed = push_ticks(schedule, specs, now, event)
        except (FlashqError, DecryptionFailed) as error:
            # The template no longer fits the queue (its schema, allow-list or size cap
            # changed), cannot be opened (its key left the keyring), or its owner has no
            # live token left: recorded, and the schedule is paused (in this
            # transaction) rather than refused again at every tick; an operator fixes
            # it and resumes it.
            code = error.code if isinstance(error, FlashqError) else "payload_unreadable"
            status = error.status if isinstance(error, FlashqError) else 500
            logger.error(
                "schedule %s of queue %s could not fire (%s): paused",
                schedule.name,
                event.queue,
                code,
            )
            _write(_failure(event, code, status, actor))
            schedule.paused = True
        else:
            schedule.last_run_at = ticks[-1]
            schedule.last_job_id = pushed[-1].job.id
    else:
        _write(event)
    schedule.next_run_at = next_tick(schedule, now)  # next_run_at <= now: only forward
    schedule.save(update_fields=["next_run_at", "last_run_at", "last_job_id", "paused"])
    return sum(p.created for p in pushed)


def _failure(event: AuditEvent, code: str, status: int, actor: Actor) -> AuditEvent:
    """The fire's event as a failure: outcome ``error`` (the engine could not do its
    work) with the status and code of what refused the push, and ``paused``: the
    schedule is paused by it. No field paths: under
    ``/data`` they are the client's key names."""
    failed = audit_event(
        actor=actor,
        action=Action.SCHEDULE_FIRE,
        status=status,
        queue=event.queue,
        details={**event.details, "fired": 0, "code": code, "paused": True},
    )
    failed.outcome = AuditEvent.Outcome.ERROR
    return failed


def _due_schedules(now: datetime) -> QuerySet[Schedule]:
    # schedule_due_idx: live schedules by next_run_at.
    return (
        Schedule.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("queue")
        .filter(paused=False, next_run_at__isnull=False, next_run_at__lte=now)
        .order_by("next_run_at")
    )


def schedules_fire(*, actor: Actor, now: datetime | None = None, limit: int = 100) -> int:
    """Fire up to ``limit`` due schedules, each in its own transaction; the number of
    jobs created. ``now`` (default: the clock) is the firer's time for the whole pass."""
    moment = now or timezone.now()
    created = 0
    for _ in range(limit):
        with transaction.atomic():
            schedule = _due_schedules(moment).first()
            if schedule is None:
                break
            created += _fire_one(schedule, moment, actor)
    return created


def earliest_due() -> datetime | None:
    """When the next live schedule falls due (the scheduler sleeps until then)."""
    return (
        Schedule.objects.filter(paused=False, next_run_at__isnull=False)
        .order_by("next_run_at")
        .values_list("next_run_at", flat=True)
        .first()
    )
