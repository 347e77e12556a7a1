"""Reads that leave a trace. Looking at a job (or waiting for it), a queue's jobs, the
queue list or a queue's figures is recorded like any change, so these wrap the
selectors with the caller's ``actor`` and write one audit event in the same transaction
as the read."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from compliance.audit import Action, Actor, audit_record
from kernel.limits import QUEUE_NAME_RE

from . import selectors
from .events.stream import StreamStart, stream_start
from .models import Job, Queue, Schedule, Webhook


def job_read(*, job_id: uuid.UUID, actor: Actor) -> Job:
    with transaction.atomic():
        job = selectors.job_get(job_id=job_id)
        audit_record(actor=actor, action=Action.GET_JOB, queue=job.queue.name, job_ids=[job_id])
    return job


def job_wait_read(*, job_id: uuid.UUID, actor: Actor) -> tuple[Job, datetime]:
    """The job at the end of a wait (queues.jobwait) and the moment it was read, for its
    reported state; the event says whether it had finished by then."""
    with transaction.atomic():
        job = selectors.job_get(job_id=job_id)
        now = timezone.now()
        audit_record(
            actor=actor,
            action=Action.WAIT_JOB,
            queue=job.queue.name,
            job_ids=[job_id],
            details={"finished": selectors.reported_finished(job, now)},
        )
    return job, now


def job_children_read(
    *, job_id: uuid.UUID, queue_name: str, readable: Callable[[str], bool], actor: Actor
) -> list[Job]:
    """A flow parent's children (of ``queue_name``), in the order pushed: those in queues
    ``readable`` accepts, the others left out without a trace in the answer."""
    with transaction.atomic():
        shown = [
            child for child in selectors.job_children(job_id=job_id) if readable(child.queue.name)
        ]
        audit_record(
            actor=actor,
            action=Action.GET_JOB_CHILDREN,
            queue=queue_name,
            job_ids=[job_id, *(child.id for child in shown)],
            details={"count": len(shown)},
        )
    return shown


def jobs_page_read(
    *, queue_name: str, state: str | None, after: uuid.UUID | None, limit: int, actor: Actor
) -> tuple[list[Job], bool]:
    """A page of a queue's jobs (oldest first) and whether more follow."""
    with transaction.atomic():
        queue = selectors.queue_get(name=queue_name)
        jobs = selectors.jobs_for_queue(queue=queue, state=state, after=after, limit=limit + 1)
        page = jobs[:limit]
        audit_record(
            actor=actor, action=Action.GET_JOBS, queue=queue_name, details={"count": len(page)}
        )
    return page, len(jobs) > limit


def queues_read(*, visible: Callable[[str], bool], actor: Actor) -> list[Queue]:
    """The queues whose name ``visible`` accepts."""
    with transaction.atomic():
        queues = [queue for queue in selectors.queues_list() if visible(queue.name)]
        audit_record(actor=actor, action=Action.LIST_QUEUES, details={"count": len(queues)})
    return queues


def queue_stats_read(*, queue_name: str, actor: Actor) -> tuple[Queue, dict[str, Any]]:
    with transaction.atomic():
        queue = selectors.queue_get(name=queue_name)
        stats = selectors.queue_stats(queue=queue)
        audit_record(actor=actor, action=Action.STATS, queue=queue_name)
    return queue, stats


def schedule_read(*, queue_name: str, name: str, actor: Actor) -> Schedule:
    with transaction.atomic():
        schedule = selectors.schedule_get(queue_name=queue_name, name=name)
        audit_record(
            actor=actor, action=Action.GET_SCHEDULE, queue=queue_name, details={"name": name}
        )
    return schedule


def schedules_read(*, queue_name: str, actor: Actor) -> list[Schedule]:
    """A queue's schedules, by name; an unknown queue has none (not a 404: a schedule
    PUT creates its queue, so the list of a queue not yet made is simply empty)."""
    with transaction.atomic():
        queue = selectors.queue_find(name=queue_name)
        schedules = [] if queue is None else selectors.schedules_for_queue(queue=queue)
        audit_record(
            actor=actor,
            action=Action.GET_SCHEDULES,
            queue=queue_name,
            details={"count": len(schedules)},
        )
    return schedules


def events_stream_read(
    *,
    pattern: str,
    reaches: Callable[[str], bool],
    names: list[str],
    last_event_id: str | None,
    actor: Actor,
) -> StreamStart:
    """Where an event stream starts (``queues.events.stream.stream_start``), recorded
    when it opens: the pattern, whether it resumed and from where, whether it starts
    with a reset, how many queues it reaches."""
    with transaction.atomic():
        start = stream_start(last_event_id)
        details: dict[str, object] = {
            "pattern": pattern,
            "resumed": start.resumed_from is not None and start.reset is None,
            "queues": sum(1 for name in names if reaches(name)),
        }
        if start.resumed_from is not None:
            details["from"] = start.resumed_from
        if start.reset is not None:
            details["reset"] = start.reset
        queue = pattern if QUEUE_NAME_RE.fullmatch(pattern) else ""
        audit_record(actor=actor, action=Action.SUBSCRIBE_EVENTS, queue=queue, details=details)
    return start


def webhook_read(*, queue_name: str, name: str, actor: Actor) -> Webhook:
    with transaction.atomic():
        webhook = selectors.webhook_get(queue_name=queue_name, name=name)
        audit_record(
            actor=actor, action=Action.GET_WEBHOOK, queue=queue_name, details={"name": name}
        )
    return webhook


def webhooks_read(*, queue_name: str, actor: Actor) -> list[Webhook]:
    """A queue's webhooks, by name (none for a queue not yet made, as for schedules)."""
    with transaction.atomic():
        webhooks = selectors.webhooks_for_queue(queue_name=queue_name)
        audit_record(
            actor=actor,
            action=Action.GET_WEBHOOKS,
            queue=queue_name,
            details={"count": len(webhooks)},
        )
    return webhooks
