"""The job event log (queues.eventmodels, migration 0021's triggers, queues.events.log):
one event per change a subscriber cares about, written in the changing transaction,
read in an order that never skips a row committed later, and pruned with a mark."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.test import override_settings
from django.utils import timezone

from kernel.limits import INTERNAL_QUEUE_PREFIX
from queues.events.log import START, Cursor, events_after, latest, prune, pruned_through
from queues.models import Job, JobEvent, Queue
from queues.services.clean import jobs_clean

from .support import SETUP, Api, make_token, postgres_only, pull, push

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _empty_log() -> None:
    """On SQLite the flush between transactional tests deletes jobs row by row, which the
    trigger logs as ``removed`` (PostgreSQL truncates, which no trigger sees)."""
    JobEvent.objects.all().delete()


def _all_events() -> list[JobEvent]:
    """Every event in the log, once the reader may see them all. On PostgreSQL the
    reader holds back until no transaction older than them is running, anywhere on the
    server (transaction ids are the cluster's): other test runs' writes delay it."""
    deadline = time.monotonic() + 30
    while True:
        events = events_after(START, limit=10_000)
        if len(events) == JobEvent.objects.count() or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


def _kinds(job_id: str) -> list[str]:
    return [event.kind for event in _all_events() if str(event.job_id) == job_id]


def test_each_change_a_subscriber_cares_about_is_one_event(api: Api) -> None:
    token = make_token("events", "jobs:*=*")
    job = push(api, token, max_attempts=2)
    [held] = pull(api, token)
    api.post(
        f"/jobs/{job['id']}/progress", {"lease_id": held["lease_id"], "progress": 40}, as_=token
    )
    # A heartbeat that changes nothing a subscriber sees adds nothing.
    api.post(
        f"/jobs/{job['id']}/progress", {"lease_id": held["lease_id"], "progress": 40}, as_=token
    )
    api.post(f"/jobs/{job['id']}/fail", {"lease_id": held["lease_id"], "error": "x"}, as_=token)
    Job.objects.filter(id=job["id"]).update(run_at=timezone.now())
    [again] = pull(api, token)
    api.post(f"/jobs/{job['id']}/ack", {"lease_id": again["lease_id"], "result": {}}, as_=token)
    assert _kinds(job["id"]) == ["pushed", "active", "progress", "retried", "active", "completed"]
    [completed] = [e for e in _all_events() if e.kind == "completed"]
    queue = Queue.objects.get(name="jobs:q")
    assert (completed.queue_id, completed.state, completed.attempts) == (queue.id, "completed", 2)


def test_a_rolled_back_change_leaves_no_event() -> None:
    queue = Queue.objects.create(name="jobs:rollback")
    with pytest.raises(RuntimeError), transaction.atomic():
        Job.objects.create(queue=queue, data={})
        raise RuntimeError
    assert not JobEvent.objects.exists()


def test_deletes_are_removed_events_unless_retention_turns_them_off() -> None:
    queue = Queue.objects.create(name="jobs:gone")
    old = timezone.now() - timedelta(days=2)
    kept, quiet = (
        Job.objects.create(queue=queue, data={}, state="completed", finished_at=old)
        for _ in range(2)
    )
    jobs_clean(
        queues=[queue], states=["completed"], finished_before_=timezone.now(), limit=1, actor=SETUP
    )
    jobs_clean(
        queues=[queue],
        states=["completed"],
        finished_before_=timezone.now(),
        limit=1,
        actor=SETUP,
        events=False,
    )
    removed = [str(e.job_id) for e in _all_events() if e.kind == "removed"]
    if connection.vendor == "postgresql":
        assert removed == [str(kept.id)]
    else:  # SQLite triggers have no session setting to read: every delete is an event.
        assert removed == [str(kept.id), str(quiet.id)]


def test_the_cursor_round_trips_and_refuses_what_is_not_one() -> None:
    assert Cursor.parse(str(Cursor(12, 34))) == Cursor(12, 34)
    for text in ["", "12", "12-", "-1-2", "a-b", "1-2-3", f"{2**63}-1", "1 - 2"]:
        assert Cursor.parse(text) is None, text


@postgres_only
def test_an_open_transactions_events_are_held_back_not_skipped() -> None:
    """Event ids are taken at insert: a reader going by id alone would pass an event of a
    transaction still open. The reader stops below the oldest running transaction."""
    queue = Queue.objects.create(name="jobs:slow")
    started, release = threading.Event(), threading.Event()

    def slow_push() -> None:
        with transaction.atomic():
            Job.objects.create(queue=queue, data={"slow": True})
            started.set()
            release.wait(10)
        connections.close_all()

    thread = threading.Thread(target=slow_push)
    thread.start()
    started.wait(10)
    fast = Job.objects.create(queue=queue, data={"fast": True})
    # The fast push committed, but its event waits for the slow one's transaction.
    assert events_after(START) == []
    release.set()
    thread.join()
    events = _all_events()
    assert len(events) == 2 and str(fast.id) in {str(e.job_id) for e in events}
    assert latest() == Cursor.of(events[-1])


@override_settings(EVENT_LOG_SECONDS=60, EVENT_LOG_MAX_ROWS=3)
def test_prune_keeps_the_window_and_the_cap_and_marks_what_went() -> None:
    queue = Queue.objects.create(name="jobs:prune")
    for _ in range(5):
        Job.objects.create(queue=queue, data={})
    events = _all_events()
    assert prune() == 2
    assert pruned_through() == Cursor.of(events[1])
    assert [e.id for e in _all_events()] == [e.id for e in events[2:]]
    assert prune(now=timezone.now() + timedelta(seconds=61)) == 3
    assert pruned_through() == Cursor.of(events[-1]) == latest()


def test_a_finished_parent_sent_back_to_wait_for_its_children_is_retried() -> None:
    """A flow parent's retry puts it back to waiting-children: subscribers hear of it."""
    queue = Queue.objects.create(name="jobs:flow")
    parent = Job.objects.create(queue=queue, data={}, state="failed")
    Job.objects.filter(id=parent.id).update(state="waiting-children")
    assert _kinds(str(parent.id)) == ["pushed", "retried"]


def test_the_engines_internal_queues_write_no_events() -> None:
    """Webhook deliveries (``_flashq.`` queues) are no subscriber's business, and would
    crowd the log: no event for their push, claim or delete."""
    internal = Queue.objects.create(name=f"{INTERNAL_QUEUE_PREFIX}webhooks")
    public = Queue.objects.create(name="jobs:public")
    hidden = Job.objects.create(queue=internal, data={})
    shown = Job.objects.create(queue=public, data={})
    Job.objects.filter(id__in=[hidden.id, shown.id]).update(state="active")
    Job.objects.filter(id__in=[hidden.id, shown.id]).delete()
    assert {str(e.job_id) for e in _all_events()} == {str(shown.id)}
    assert _kinds(str(shown.id)) == ["pushed", "active", "removed"]
