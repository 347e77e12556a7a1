"""Reading and pruning the job event log (``queues.eventmodels``).

Events are read in ``(txid, id)`` order after a ``Cursor``. On PostgreSQL an id is taken
when a row is written, not when it commits, so a reader that went by ids alone could
read event 105, advance past it, and never see event 103 whose transaction commits a
moment later. So a read only takes events of transactions older than the oldest one
still running (the snapshot's ``xmin``): those have all ended, and anything that
commits later has a ``txid`` at or above that horizon, which is above every cursor
handed out. The price is that a transaction left open delays the stream (not loses
it) for as long as it stays open. On SQLite writers take turns, so ids are in commit
order and every ``txid`` is 0.

The log keeps ``EVENT_LOG_SECONDS`` of events and at most ``EVENT_LOG_MAX_ROWS``;
``prune`` (run by the scheduler) deletes the rest (but not, within the row cap, what
the webhook dispatcher has yet to read) and remembers the newest event it
deleted (``EventLogMark``), so a cursor at or below it is known to have a gap."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from ..eventmodels import EventLogMark, JobEvent
from ..webhookmodels import Webhook, WebhookCursor

_CURSOR_RE = re.compile(r"(\d{1,19})-(\d{1,19})")


@dataclass(frozen=True, order=True)
class Cursor:
    """A place in the log: just after the event ``(txid, event_id)``. Sent to an SSE
    subscriber as each event's ``id``, ``"<txid>-<id>"``, and taken back from its
    ``Last-Event-ID``."""

    txid: int
    event_id: int

    @classmethod
    def parse(cls, text: str) -> Cursor | None:
        """The cursor ``text`` names, or None when it names none."""
        match = _CURSOR_RE.fullmatch(text.strip())
        if match is None:
            return None
        txid, event_id = int(match[1]), int(match[2])
        if max(txid, event_id) >= 2**63:
            return None
        return cls(txid, event_id)

    @classmethod
    def of(cls, event: JobEvent) -> Cursor:
        return cls(event.txid, event.id)

    def __str__(self) -> str:
        return f"{self.txid}-{self.event_id}"


START = Cursor(0, 0)


def horizon() -> int | None:
    """The smallest ``txid`` whose events may not all be visible yet (PostgreSQL), or
    None where every committed event may be read (SQLite)."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        [(xmin,)] = cursor.fetchall()
    return int(xmin)


def events_after(
    cursor: Cursor, *, queue_ids: list[int] | None = None, limit: int = 500
) -> list[JobEvent]:
    """Up to ``limit`` events after ``cursor`` in log order, of ``queue_ids`` (None:
    every queue), none of a transaction that may still be running."""
    events = JobEvent.objects.filter(txid__gte=cursor.txid).exclude(
        txid=cursor.txid, id__lte=cursor.event_id
    )
    top = horizon()
    if top is not None:
        events = events.filter(txid__lt=top)
    if queue_ids is not None:
        events = events.filter(queue_id__in=queue_ids)
    return list(events.order_by("txid", "id")[:limit])


def latest() -> Cursor:
    """The cursor after every event readable now: where a new subscriber starts."""
    top = horizon()
    events = JobEvent.objects.all()
    if top is not None:
        events = events.filter(txid__lt=top)
    newest = events.order_by("-txid", "-id").only("txid", "id").first()
    pruned = pruned_through()
    if newest is None or Cursor.of(newest) < pruned:
        return pruned
    return Cursor.of(newest)


def pruned_through() -> Cursor:
    """The newest event pruned so far (START when none has been)."""
    mark = EventLogMark.objects.filter(id=1).first()
    return START if mark is None else Cursor(mark.txid, mark.event_id)


def events_off() -> None:
    """Inside a transaction: its deletes of jobs write no ``removed`` events
    (PostgreSQL; migration 0021's trigger reads ``flashq.events``)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('flashq.events', 'off', true)")


def prune(*, now: datetime | None = None, batch: int = 10_000) -> int:
    """Delete events older than ``EVENT_LOG_SECONDS`` and any beyond the newest
    ``EVENT_LOG_MAX_ROWS``, oldest first, at most ``batch`` per transaction, each
    batch recording the newest it deleted. Returns how many went."""
    now = now or timezone.now()
    end = _prune_end(now)
    deleted = 0
    while end is not None:
        with transaction.atomic():
            step = _batch_end(end, batch)
            gone, _ = _through(step).delete()
            mark, _ = EventLogMark.objects.select_for_update().get_or_create(id=1)
            if step > Cursor(mark.txid, mark.event_id):
                mark.txid, mark.event_id = step.txid, step.event_id
                mark.save(update_fields=["txid", "event_id"])
        deleted += gone
        if step >= end:
            break
    return deleted


def _through(end: Cursor) -> QuerySet[JobEvent]:
    """The events at or before ``end``."""
    return JobEvent.objects.filter(txid__lte=end.txid).exclude(txid=end.txid, id__gt=end.event_id)


def _prune_end(now: datetime) -> Cursor | None:
    """The newest event due to go: past the window, or past the row cap. While a
    webhook is enabled, the window waits for the webhook dispatcher (events it has not
    queued yet stay, however old: a sender down for a while loses nothing); the row
    cap does not, so the log stays bounded."""
    cutoff = now - timedelta(seconds=settings.EVENT_LOG_SECONDS)
    aged = JobEvent.objects.filter(at__lt=cutoff)
    if Webhook.objects.filter(enabled=True).exists():
        dispatched = WebhookCursor.objects.filter(id=1).first()
        unread = START if dispatched is None else Cursor(dispatched.txid, dispatched.event_id)
        aged = aged & _through(unread)
    old = aged.order_by("-txid", "-id").first()
    overflow = (
        JobEvent.objects.order_by("-txid", "-id")
        .only("txid", "id")[settings.EVENT_LOG_MAX_ROWS : settings.EVENT_LOG_MAX_ROWS + 1]
        .first()
    )
    ends = [Cursor.of(event) for event in (old, overflow) if event is not None]
    return max(ends) if ends else None


def _batch_end(end: Cursor, batch: int) -> Cursor:
    """The ``batch``-th oldest event, or ``end`` when fewer are left before it."""
    nth = _through(end).order_by("txid", "id").only("txid", "id")[batch - 1 : batch].first()
    return end if nth is None else min(Cursor.of(nth), end)
