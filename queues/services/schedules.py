"""Repeatable jobs: save (create or replace), delete, pause, resume and trigger a
queue's schedules. The tick engine that fires them is queues.services.schedule_fire.

A schedule's template is a push held for later: its data passes the queue's size cap,
schema and card guard when it is saved (422, nothing saved), is sealed at rest like a
job's, and passes them again each time a tick pushes it. Audit events name the schedule
and its timing, never its data."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from compliance.audit import Action, Actor, audit_event, audit_record
from security.selectors import owner_live

from ..errors import OwnerRevoked, ScheduleNotFound
from ..models import Job, Queue, Schedule
from ..schedulespec import ScheduleSpec, next_tick
from .common import (
    full_clean_or_invalid,
    refuse_cards_in_data,
    refuse_cards_in_subjects,
    refuse_off_schema,
    refuse_oversize,
)
from .schedule_fire import push_ticks, template_spec

_STEP = timedelta(microseconds=1)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def _locked(queue_name: str, name: str) -> Schedule:
    schedule: Schedule | None = (
        Schedule.objects.select_for_update(of=("self",))
        .select_related("queue")
        .filter(queue__name=queue_name, name=name)
        .first()
    )
    if schedule is None:
        raise ScheduleNotFound()
    return schedule


def _refuse_unfit(spec: ScheduleSpec, queue: Queue) -> None:
    """The template must fit the queue as a push would (413 or 422)."""
    template = spec.template
    refuse_oversize([(template.data_bytes, "/data")], queue)
    refuse_off_schema([(template.data, "/data")], queue)
    refuse_cards_in_data([(template.card_findings, "/data")], queue.card_allowlist)
    if not template.subject:
        refuse_cards_in_subjects([(template.data, "/data")], queue)


def _apply(schedule: Schedule, spec: ScheduleSpec) -> None:
    template = spec.template
    schedule.cron = spec.cron
    schedule.every_ms = spec.every_ms
    schedule.time_zone = spec.timezone
    schedule.data = template.data
    schedule.priority = template.priority
    schedule.max_attempts = template.max_attempts
    schedule.backoff = template.backoff
    schedule.timeout_ms = template.timeout_ms
    schedule.tags = list(template.tags)
    schedule.subject = template.subject
    schedule.start_at = spec.start_at
    schedule.end_at = spec.end_at
    schedule.catch_up = spec.catch_up
    schedule.max_catch_up = spec.max_catch_up


def _after(schedule: Schedule, now: datetime, pending: datetime | None) -> datetime:
    """Where a saved schedule's next run is looked for: after now, but never before
    its last fired tick (a replace never refires a tick); and a live schedule's due,
    not yet fired tick (``pending`` <= now) is kept: the next run is then the new
    spec's first tick from it, and the engine fires what fell due under ``catch_up``."""
    after = now
    if pending is not None and pending <= now:
        after = pending - _STEP  # pending is itself the first unfired tick
    if schedule.last_run_at is not None:
        after = max(after, schedule.last_run_at)
    return after


def schedule_save(
    *, queue_name: str, name: str, spec: ScheduleSpec, owner: str, actor: Actor
) -> tuple[Schedule, bool]:
    """Create or replace the schedule ``name`` of a queue (created if missing, as a push
    does); whether it was created. Its jobs are ``owner``'s (their pushed_by). The next
    run is the first tick after now and after the last tick fired, so a replace never
    fires a tick twice; a live schedule's due tick not yet fired is kept (an identical
    PUT drops nothing); a paused schedule stays paused."""
    now = timezone.now()
    with transaction.atomic():
        queue, queue_created = Queue.objects.get_or_create(name=queue_name)
        _refuse_unfit(spec, queue)
        schedule: Schedule | None = (
            Schedule.objects.select_for_update().filter(queue=queue, name=name).first()
        )
        created = schedule is None
        if schedule is None:
            schedule = Schedule(queue=queue, name=name, created_at=now)
        pending = None if schedule.paused else schedule.next_run_at
        _apply(schedule, spec)
        schedule.created_by = owner
        schedule.updated_at = now
        full_clean_or_invalid(schedule, exclude=["queue", "data"], what="schedule")
        schedule.next_run_at = next_tick(schedule, _after(schedule, now, pending))
        schedule.save(force_insert=created)
        audit_record(
            actor=actor,
            action=Action.SCHEDULE_SAVE,
            status=201 if created else 200,
            queue=queue_name,
            details={
                "name": name,
                **({"cron": spec.cron} if spec.cron else {"every_ms": spec.every_ms}),
                "timezone": spec.timezone,
                "catch_up": spec.catch_up,
                "next_run_at": _iso(schedule.next_run_at),
                "created": created,
                **({"queue_created": True} if queue_created else {}),
            },
        )
    return schedule, created


def _reason(reason: str) -> dict[str, str]:
    return {"reason": reason[:500]} if reason else {}


def schedule_delete(*, queue_name: str, name: str, actor: Actor, reason: str = "") -> None:
    """Delete a schedule; the jobs it already pushed stay."""
    with transaction.atomic():
        schedule = _locked(queue_name, name)
        schedule.delete()
        audit_record(
            actor=actor,
            action=Action.SCHEDULE_DELETE,
            status=204,
            queue=queue_name,
            details={"name": name, **_reason(reason)},
        )


def schedule_pause(*, queue_name: str, name: str, actor: Actor, reason: str = "") -> Schedule:
    """Stop firing the schedule (its next_run_at is kept, for the record)."""
    with transaction.atomic():
        schedule = _locked(queue_name, name)
        changed = not schedule.paused
        schedule.paused = True
        schedule.updated_at = timezone.now()
        schedule.save(update_fields=["paused", "updated_at"])
        audit_record(
            actor=actor,
            action=Action.SCHEDULE_PAUSE,
            queue=queue_name,
            details={"name": name, "changed": changed, **_reason(reason)},
        )
    return schedule


def schedule_resume(*, queue_name: str, name: str, actor: Actor, reason: str = "") -> Schedule:
    """Fire a paused schedule again from its first tick after now: the ticks that fell
    due while it was paused are not fired. A schedule that is not paused is left as it
    is (recorded with ``changed: false``)."""
    now = timezone.now()
    with transaction.atomic():
        schedule = _locked(queue_name, name)
        changed = schedule.paused
        if changed:  # resuming a live schedule changes nothing (its due tick stays)
            schedule.paused = False
            after = max(now, schedule.last_run_at) if schedule.last_run_at else now
            schedule.next_run_at = next_tick(schedule, after)
            schedule.updated_at = now
            schedule.save(update_fields=["paused", "next_run_at", "updated_at"])
        audit_record(
            actor=actor,
            action=Action.SCHEDULE_RESUME,
            queue=queue_name,
            details={
                "name": name,
                "changed": changed,
                "next_run_at": _iso(schedule.next_run_at),
                **_reason(reason),
            },
        )
    return schedule


def schedule_trigger(*, queue_name: str, name: str, actor: Actor, reason: str = "") -> Job:
    """Push one job from the template now (paused or not), without a tick key; the
    schedule's next_run_at does not move. The job is the schedule's owner's, so an
    owner with no live token left is refused (OwnerRevoked, 403) as a tick would be:
    a PUT by a live token makes the schedule that token's."""
    now = timezone.now()
    with transaction.atomic():
        schedule = _locked(queue_name, name)
        if not owner_live(schedule.created_by, now=now):
            raise OwnerRevoked()
        event = audit_event(
            actor=actor,
            action=Action.SCHEDULE_TRIGGER,
            status=201,
            queue=queue_name,
            details={"name": name, **_reason(reason)},
        )
        [pushed] = push_ticks(schedule, [template_spec(schedule, key=None)], now, event)
        schedule.last_job_id = pushed.job.id
        schedule.save(update_fields=["last_job_id"])
    return pushed.job
