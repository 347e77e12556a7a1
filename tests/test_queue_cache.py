"""The per-process queue cache (queues.queuecache): push and pull read their queue's
settings as this process remembers them, at most QUEUE_CACHE_SECONDS old; a change
made here is seen at once when it commits, one made elsewhere (an UPDATE behind the
ORM's back, as another app server's) within the cache time. A queue deleted meanwhile
never gets a job with a dangling queue id. Two app servers: tests/test_scale_out.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import override_settings

from queues import queuecache, selectors
from queues.models import Job, Queue
from queues.services import queue_set_paused, queue_set_schema

from .support import SETUP, Api, postgres_only, pull, push

pytestmark = pytest.mark.django_db

FIELDS = frozenset({"id", "name", "paused", "json_schema", "grouped"})


@pytest.fixture(autouse=True)
def cache_on() -> Iterator[None]:
    queuecache.forget_queues()
    with override_settings(QUEUE_CACHE_SECONDS=1.0):
        yield
    queuecache.forget_queues()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> dict[str, float]:
    """The cache's monotonic clock, moved by hand."""
    now = {"t": 1000.0}
    monkeypatch.setattr(queuecache, "_clock", lambda: now["t"])
    return now


def _behind_the_back(name: str, **fields: Any) -> None:
    """Change a queue as another app server would: no signal reaches this process."""
    assert Queue.objects.filter(name=name).update(**fields) == 1


def test_a_remembered_queue_is_read_without_a_query(django_assert_num_queries: Any) -> None:
    Queue.objects.create(name="q")
    first = queuecache.queue_named("q", FIELDS)
    with django_assert_num_queries(0):
        again = queuecache.queue_named("q", FIELDS)
    assert first is not None and again is not None
    assert (again.pk, again.name, again.paused) == (first.pk, "q", False)


def test_each_caller_gets_its_own_queue() -> None:
    Queue.objects.create(name="q")
    first = queuecache.queue_named("q", FIELDS)
    assert first is not None
    first.grouped = True  # as a push does to its copy on the queue's first grouped job
    first.paused = True
    again = queuecache.queue_named("q", FIELDS)
    assert again is not None and again is not first
    assert (again.grouped, again.paused) == (False, False)


def test_a_change_elsewhere_is_seen_once_the_cache_time_is_over(clock: dict[str, float]) -> None:
    Queue.objects.create(name="q")
    assert queuecache.queue_named("q", FIELDS).paused is False  # type: ignore[union-attr]
    _behind_the_back("q", paused=True)
    clock["t"] += 0.99
    assert queuecache.queue_named("q", FIELDS).paused is False  # type: ignore[union-attr]
    clock["t"] += 0.01
    assert queuecache.queue_named("q", FIELDS).paused is True  # type: ignore[union-attr]


def test_zero_turns_the_cache_off(django_assert_num_queries: Any) -> None:
    Queue.objects.create(name="q")
    with override_settings(QUEUE_CACHE_SECONDS=0):
        queuecache.queue_named("q", FIELDS)
        _behind_the_back("q", paused=True)
        with django_assert_num_queries(1):
            assert queuecache.queue_named("q", FIELDS).paused is True  # type: ignore[union-attr]


def test_a_missing_queue_is_never_remembered(django_assert_num_queries: Any) -> None:
    assert queuecache.queue_named("q", FIELDS) is None
    made = Queue.objects.create(name="q")
    found = queuecache.queue_named("q", FIELDS)
    assert found is not None and found.pk == made.pk


def test_a_read_that_raced_with_a_committed_change_is_not_remembered(
    monkeypatch: pytest.MonkeyPatch, django_assert_num_queries: Any
) -> None:
    Queue.objects.create(name="q")
    read = selectors.queue_row

    def read_then_a_change_commits(name: str, fields: frozenset[str]) -> Any:
        row = read(name, fields)
        queuecache.forget_queues()  # what a change's commit does, after the row was read
        return row

    monkeypatch.setattr(selectors, "queue_row", read_then_a_change_commits)
    assert queuecache.queue_named("q", FIELDS) is not None
    monkeypatch.setattr(selectors, "queue_row", read)
    with django_assert_num_queries(1):  # read again: the old row was not put back
        queuecache.queue_named("q", FIELDS)


def test_the_transaction_that_changes_a_queue_reads_it_from_the_database() -> None:
    """Inside it, its own change; outside, never a change that did not commit."""
    Queue.objects.create(name="q")
    assert queuecache.queue_named("q", FIELDS).paused is False  # type: ignore[union-attr]
    with pytest.raises(RuntimeError), transaction.atomic():
        queue_set_paused(name="q", paused=True, actor=SETUP)
        assert queuecache.queue_named("q", FIELDS).paused is True  # type: ignore[union-attr]
        raise RuntimeError("rolled back")
    assert queuecache.queue_named("q", FIELDS).paused is False  # type: ignore[union-attr]


# -- through the API, committing as in production --------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_pause_resume_or_schema_made_here_is_seen_at_once(api: Api, full: str) -> None:
    push(api, full, queue="q")
    assert pull(api, full, queue="q")  # push and pull remember the queue
    push(api, full, queue="q")
    queue_set_paused(name="q", paused=True, actor=SETUP)
    assert pull(api, full, queue="q") == []
    queue_set_paused(name="q", paused=False, actor=SETUP)
    assert len(pull(api, full, queue="q")) == 1
    queue_set_schema(name="q", schema={"type": "object", "required": ["to"]}, actor=SETUP)
    refused = api.post("/queues/q/jobs", {"data": {"n": 1}}, as_=full)
    assert refused.status == 422, refused.body
    removed = api.request("DELETE", "/queues/q/schema", as_=full)  # the API's own way
    assert removed.status == 200, removed.body
    assert api.post("/queues/q/jobs", {"data": {"n": 1}}, as_=full).status == 201


@pytest.mark.django_db(transaction=True)
def test_a_grouped_push_makes_this_process_s_pulls_grouped_at_once(api: Api, full: str) -> None:
    push(api, full, queue="q")
    pull(api, full, queue="q")  # remembered as never grouped
    push(api, full, queue="q", group="g")
    push(api, full, queue="q", group="g")
    # The grouped claim at once: one job of the group at a time (the plain one would
    # leave both alone, queues.claim).
    assert [job["group"] for job in pull(api, full, queue="q", count=2)] == ["g"]


def _delete_elsewhere(name: str) -> int:
    """Delete the queue as another app server would (SQL, no signal here)."""
    queue = Queue.objects.get(name=name)
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM queues_queue WHERE id = %s", [queue.pk])
    return queue.pk


@postgres_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/jobs", {"data": {"n": 1}}),
        ("/jobs", {"data": {"n": 1}, "key": "k"}),
        ("/jobs", {"data": {"n": 1}, "group": "g"}),
        ("/jobs/batch", {"jobs": [{"data": {"n": 1}}, {"data": {"n": 2}}]}),
        ("/jobs/batch", {"jobs": [{"data": {"n": 1}, "key": "a"}, {"data": {"n": 2}}]}),
    ],
    ids=["single", "keyed", "grouped", "batch", "keyed-batch"],
)
def test_a_push_into_a_queue_deleted_since_it_was_remembered_creates_it_again(
    api: Api, full: str, path: str, body: dict[str, Any]
) -> None:
    from queues.services.push import _PUSH_QUEUE_FIELDS

    Queue.objects.create(name="q")
    assert queuecache.queue_named("q", _PUSH_QUEUE_FIELDS) is not None  # remembered
    old = _delete_elsewhere("q")
    call = api.post(f"/queues/q{path}", body, as_=full)
    assert call.status == 201, call.body
    queue = Queue.objects.get(name="q")
    assert queue.pk != old
    assert Job.objects.filter(queue=queue).count() == len(body.get("jobs", [body]))
    assert not Job.objects.exclude(queue=queue).exists()


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_push_into_a_queue_recreated_elsewhere_goes_into_the_new_one(api: Api, full: str) -> None:
    push(api, full, queue="other")
    Queue.objects.create(name="q")
    push(api, full, queue="other")
    assert pull(api, full, queue="q") == []  # remembered, with the pull's fields
    from queues.services.push import _PUSH_QUEUE_FIELDS

    assert queuecache.queue_named("q", _PUSH_QUEUE_FIELDS) is not None
    _delete_elsewhere("q")
    fresh = Queue.objects.create(name="q")  # no signal for a new queue: as if elsewhere
    assert push(api, full, queue="q")["queue"] == "q"
    assert Job.objects.filter(queue=fresh).count() == 1
    assert len(pull(api, full, queue="q")) == 1


def test_a_schema_or_pause_set_elsewhere_holds_here_once_the_cache_time_is_over(
    api: Api, full: str, clock: dict[str, float]
) -> None:
    push(api, full, queue="q")
    push(api, full, queue="q")  # push remembers the queue
    assert pull(api, full, queue="q")  # and so does pull
    _behind_the_back("q", json_schema={"type": "object", "required": ["to"]}, paused=True)
    clock["t"] += 0.5
    assert api.post("/queues/q/jobs", {"data": {"n": 1}}, as_=full).status == 201
    assert len(pull(api, full, queue="q")) == 1
    clock["t"] += 0.5
    assert api.post("/queues/q/jobs", {"data": {"n": 1}}, as_=full).status == 422
    assert pull(api, full, queue="q") == []


@postgres_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("key", [None, "k"], ids=["plain", "keyed"])
def test_a_flow_into_a_queue_deleted_since_it_was_remembered_creates_it_again(
    api: Api, full: str, key: str | None
) -> None:
    from queues.services.push import _PUSH_QUEUE_FIELDS

    for name in ("root", "leaf"):
        Queue.objects.create(name=name)
        assert queuecache.queue_named(name, _PUSH_QUEUE_FIELDS) is not None
    old = _delete_elsewhere("leaf")
    root = {"data": {"n": 1}, **({"key": key} if key else {})}
    body = {"job": root, "children": [{"queue": "leaf", "job": {"data": {"n": 2}}}]}
    call = api.post("/queues/root/flows", body, as_=full)
    assert call.status == 201, call.body
    leaf = Queue.objects.get(name="leaf")
    assert leaf.pk != old and Job.objects.filter(queue=leaf).count() == 1
