"""The job event log is pruned by the scheduler (compliance.tasks.prune_events, set up
by setup_schedules) in bounded batches, each marking how far it went, so a stream
resuming from a pruned event is told ``reset``."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db.models import QuerySet
from django.test import override_settings
from django.utils import timezone
from django_q.models import Schedule

from compliance import tasks
from queues.events import log
from queues.events.log import START, Cursor, events_after, prune, pruned_through
from queues.events.stream import stream_start
from queues.models import Job, JobEvent, Queue, Webhook, WebhookCursor

from .eventstreams import log_readable

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _empty_log() -> None:
    JobEvent.objects.all().delete()


def _jobs(count: int) -> list[JobEvent]:
    queue = Queue.objects.create(name="jobs:prune")
    for _ in range(count):
        Job.objects.create(queue=queue, data={})
    log_readable()
    return events_after(START)


def test_the_scheduler_prunes_the_log_every_minute() -> None:
    call_command("setup_schedules", stdout=StringIO())
    schedule = Schedule.objects.get(func="compliance.tasks.prune_events")
    assert (schedule.schedule_type, schedule.minutes) == (Schedule.MINUTES, 1)
    events = _jobs(3)
    with override_settings(EVENT_LOG_MAX_ROWS=1):
        assert tasks.prune_events() == "pruned 2 event(s)"
    assert pruned_through() == Cursor.of(events[1])


def test_prune_works_in_batches_oldest_first() -> None:
    events = _jobs(7)
    with override_settings(EVENT_LOG_SECONDS=0):
        assert prune(now=timezone.now() + timedelta(seconds=1), batch=3) == 7
    assert pruned_through() == Cursor.of(events[-1])
    assert not JobEvent.objects.exists()


def test_a_batch_that_fails_leaves_the_mark_at_the_last_batch_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events = _jobs(5)

    done: list[int] = []
    real_through = log._through

    # Each batch reads _through twice (its end, then its delete): the third fails.
    def failing_through(end: Cursor) -> QuerySet[JobEvent]:
        if len(done) == 4:
            raise RuntimeError("the database went away")
        done.append(1)
        return real_through(end)

    monkeypatch.setattr(log, "_through", failing_through)
    with pytest.raises(RuntimeError), override_settings(EVENT_LOG_SECONDS=0):
        prune(now=timezone.now() + timedelta(seconds=1), batch=2)
    assert pruned_through() == Cursor.of(events[3])
    assert [e.id for e in events_after(START)] == [events[4].id]
    assert stream_start(str(Cursor.of(events[2]))).reset == "pruned"
    assert stream_start(str(Cursor.of(events[3]))).reset == "pruned"
    assert stream_start(str(Cursor.of(events[4]))).reset is None


@override_settings(EVENT_LOG_SECONDS=60, EVENT_LOG_MAX_ROWS=5)
def test_the_window_waits_for_the_webhook_dispatcher_but_the_row_cap_does_not() -> None:
    """A sender down longer than the window loses no delivery; the log stays bounded."""
    events = _jobs(4)
    queue = Queue.objects.get(name="jobs:prune")
    Webhook.objects.create(
        queue=queue, name="h", url="https://example.com/h", events=["pushed"], secret="s"
    )
    WebhookCursor.objects.create(id=1, txid=events[0].txid, event_id=events[0].id)
    later = timezone.now() + timedelta(seconds=61)
    assert prune(now=later) == 1  # only what the dispatcher has queued
    assert pruned_through() == Cursor.of(events[0])
    Webhook.objects.update(enabled=False)
    assert prune(now=later) == 3
    Webhook.objects.update(enabled=True)
    for _ in range(7):
        Job.objects.create(queue=queue, data={})
    log_readable()
    assert prune(now=later) == 2  # over the cap of 5, dispatched or not
    assert JobEvent.objects.count() == 5
