"""The dispatcher: reads the job event log (queues.events.log) after its cursor, and for
each event that an enabled webhook of the event's queue wants, pushes one delivery job
into the internal queue (kernel.limits.WEBHOOK_QUEUE). The jobs and the cursor's new
place commit in one transaction, under a lock on the cursor's row: each event's
deliveries are queued exactly once, however many dispatchers run, and, the log being
written with the change itself, none is missed for a change that committed.

A delivery job's data is the event as it is POSTed (the fields of the event stream,
never a payload, result or error text) and the webhook's id; its key is the webhook's
id and the event's, so it is unique while it waits. A webhook hears only events after
its creation."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction

from compliance.audit import Actor
from kernel.limits import WEBHOOK_QUEUE

from ..eventmodels import JobEvent
from ..events.log import Cursor, events_after, latest, pruned_through
from ..events.stream import event_data
from ..jobspec import JobSpec
from ..models import Webhook, WebhookCursor
from ..services import delivery_key_prefix, jobs_push

logger = logging.getLogger("flashq.webhooks")

#: Who pushes, leases and acks the deliveries (their jobs' pushed_by and lease owner).
OWNER = "system:webhooks"
BATCH = 500


def event_body(event: JobEvent, queue_name: str, webhook: str) -> dict[str, Any]:
    """What a webhook is sent about one event: the event stream's fields, formatted
    alike, with the event's id and kind (an SSE frame's ``id:`` and ``event:``)."""
    return {
        "id": str(Cursor.of(event)),
        "kind": event.kind,
        **event_data(event, queue_name),
        "webhook": webhook,
    }


def delivery_spec(webhook: Webhook, event: JobEvent, queue_name: str) -> JobSpec:
    return JobSpec(
        data={"webhook": str(webhook.id), "event": event_body(event, queue_name, webhook.name)},
        max_attempts=settings.WEBHOOK_MAX_ATTEMPTS,
        backoff={
            "type": "exponential",
            "delay": settings.WEBHOOK_RETRY_DELAY_MS,
            "max": 3_600_000,
            "jitter": 0.2,
        },
        key=delivery_key_prefix(webhook.id) + str(Cursor.of(event)),
    )


def _wanted(webhooks: list[Webhook], events: list[JobEvent]) -> list[JobSpec]:
    by_queue: dict[int, list[Webhook]] = {}
    for webhook in webhooks:
        by_queue.setdefault(webhook.queue_id, []).append(webhook)
    specs = []
    for event in events:
        for webhook in by_queue.get(event.queue_id, ()):
            if event.kind in webhook.events and event.at >= webhook.created_at:
                specs.append(delivery_spec(webhook, event, webhook.queue.name))
    return specs


def dispatch(*, actor: Actor, limit: int = BATCH) -> int:
    """One pass: queue the deliveries of up to ``limit`` events after the cursor.
    Returns how many delivery jobs were pushed."""
    with transaction.atomic():
        mark, _ = WebhookCursor.objects.select_for_update().get_or_create(id=1)
        start = Cursor(mark.txid, mark.event_id)
        if start < pruned_through():
            logger.warning("webhooks: the event log was pruned past the dispatcher's cursor")
        webhooks = list(Webhook.objects.filter(enabled=True).select_related("queue"))
        top = latest()  # everything up to here is read below, whatever its queue
        events = events_after(start, queue_ids=sorted({w.queue_id for w in webhooks}), limit=limit)
        specs = _wanted(webhooks, events)
        if specs:
            jobs_push(queue_name=WEBHOOK_QUEUE, specs=specs, owner=OWNER, actor=actor)
        end = Cursor.of(events[-1]) if events else start
        if len(events) < limit:
            end = max(end, top)
        if end != start:
            mark.txid, mark.event_id = end.txid, end.event_id
            mark.save(update_fields=["txid", "event_id"])
    return len(specs)
