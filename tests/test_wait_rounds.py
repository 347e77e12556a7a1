"""What a returning long poll costs (queues.waiting.PullWait, queues.notifier marks): on
a queue this process already waits on, a claim that found nothing, with no notification
since, is not repeated, neither before the wait nor at its end; and a notification in
between (a push on any app server) makes it claim again, so nothing is missed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

import psycopg
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from compliance.models import AuditEvent
from queues import notifier
from queues.wakes import Mark, Wake
from queues.wakeup import CHANNEL

from .support import ON_POSTGRES, Api, Call, make_token, push
from .test_wakeup import _dsn

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not ON_POSTGRES, reason="marks follow PostgreSQL's notifications"),
]


def _pull(token: str, queue: str, wait: float) -> Call:
    try:
        return Api().post(f"/queues/{queue}/pull", {"wait": wait}, as_=token)
    finally:
        connection.close()


@contextmanager
def held(token: str, queue: str) -> Iterator[Future[Call]]:
    """A pull waiting up to 20 s on ``queue`` for the block: this process holds the
    queue's lock, drained. Its answer is the future's (a push wakes it)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        waiter = pool.submit(_pull, token, queue, 20)
        deadline = time.monotonic() + 10
        while notifier.notifier().mark(queue) is None:
            assert time.monotonic() < deadline and not waiter.done(), "it never waited"
            time.sleep(0.02)
        yield waiter


def _claims(captured: CaptureQueriesContext) -> list[str]:
    return [query["sql"] for query in captured.captured_queries if "SKIP LOCKED" in query["sql"]]


def test_a_returning_long_poll_on_an_idle_queue_runs_no_claim() -> None:
    token = make_token("lp", "*=*")
    with held(token, "idle") as waiter:
        assert _pull(token, "idle", 0.2).body == {"jobs": []}  # claims: finds nothing
        before = AuditEvent.objects.filter(action="pull").count()
        with CaptureQueriesContext(connection) as captured:
            answer = Api().post("/queues/idle/pull", {"wait": 0.2}, as_=token)
        assert answer.status == 200 and answer.body == {"jobs": []}
        assert _claims(captured) == []  # neither before its wait nor at its end
        assert AuditEvent.objects.filter(action="pull").count() == before + 1  # its event
        push(Api(), token, queue="idle")
        assert len(waiter.result(timeout=10).body["jobs"]) == 1


def test_a_pull_that_skipped_its_claim_still_gets_the_next_push() -> None:
    """Two pulls wait on an idle queue, the second without a claim before its wait (the
    first already found nothing); each of two pushes wakes one of them."""
    token = make_token("lp", "*=*")
    with held(token, "idle") as first:
        assert _pull(token, "idle", 0.2).body == {"jobs": []}
        with ThreadPoolExecutor(max_workers=1) as pool:
            started = time.monotonic()
            second = pool.submit(_pull, token, "idle", 20)
            time.sleep(0.5)  # it waits
            push(Api(), token, queue="idle")
            push(Api(), token, queue="idle")
            answers = [first.result(timeout=10), second.result(timeout=10)]
    assert [len(answer.body["jobs"]) for answer in answers] == [1, 1]
    assert time.monotonic() - started < 10  # woken, not at the end of the waits


def _notified(other: psycopg.Connection, queue: str, since: Mark) -> None:
    """Another session (another app server's push) notifies ``queue``; back once this
    process's listener has dispatched it."""
    other.execute("SELECT pg_notify(%s, %s)", [CHANNEL, queue])
    deadline = time.monotonic() + 10
    while notifier.notifier().mark(queue) == since:
        assert time.monotonic() < deadline, "the notification never arrived"
        time.sleep(0.01)


def test_a_notification_since_the_empty_claim_means_the_queue_is_not_known_empty() -> None:
    """(A pull right after it claims again; the waiter it woke claims too, and once that
    found nothing the queue is known empty again: tests/test_wait_rounds's first test.)"""
    token = make_token("lp", "*=*")
    listener = notifier.notifier()
    with held(token, "idle") as waiter, psycopg.connect(_dsn(), autocommit=True) as other:
        mark = listener.mark("idle")
        assert mark is not None
        listener.saw_nothing("idle", mark)
        assert listener.known_empty("idle", mark)
        _notified(other, "idle", mark)
        assert not listener.known_empty("idle", mark)
        push(Api(), token, queue="idle")
        waiter.result(timeout=10)


def _join(queue: str, mark: Mark | None) -> bool:
    """Whether a waiter registering now with ``mark`` is covered (on the fast path)."""

    async def join() -> bool:
        wake = Wake(postgresql=True, slice_seconds=None)
        listener = notifier.notifier()
        assert listener.try_join_queue(queue, wake, mark)
        assert listener.try_leave_queue(queue, wake)
        return wake.covered

    return asyncio.run(join())


def test_a_waiter_is_covered_only_if_nothing_was_dispatched_since_its_mark() -> None:
    token = make_token("lp", "*=*")
    listener = notifier.notifier()
    with held(token, "idle") as waiter, psycopg.connect(_dsn(), autocommit=True) as other:
        mark = listener.mark("idle")
        assert mark is not None
        assert _join("idle", mark) is True
        _notified(other, "idle", mark)  # between its claim and its registration
        assert _join("idle", mark) is False
        assert _join("idle", None) is False
        mark = listener.mark("idle")
        listener._wake_everyone()  # a reset: notifications may have been lost
        assert _join("idle", mark) is False
        push(Api(), token, queue="idle")
        waiter.result(timeout=10)
    assert listener.mark("idle") is None  # the lock was given back: no mark to take
