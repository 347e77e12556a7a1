"""Long-poll wake-ups on PostgreSQL (queues.wakeup): a push NOTIFYs only while a pull is
waiting on its queue, and a push that checked before a waiter registered is still seen
by that waiter's next claim."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection, transaction

from compliance.audit import Actor
from queues import notifier, services
from queues.flowspec import FlowNode
from queues.jobspec import JobSpec

from .support import ON_POSTGRES, Api, make_token

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not ON_POSTGRES, reason="NOTIFY and advisory locks are PostgreSQL's"),
]


def _dsn() -> str:
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    params.pop("prepare_threshold", None)  # psycopg's, not a libpq option
    kept = {key: str(value) for key, value in params.items() if isinstance(value, str | int)}
    return psycopg.conninfo.make_conninfo("", **kept)


@pytest.fixture
def other_session() -> Iterator[psycopg.Connection]:
    """A second database session, as another app server's would be."""
    with psycopg.connect(_dsn(), autocommit=True) as conn:
        yield conn


def _pushed_notifications(listener: psycopg.Connection, queue: str) -> list[str]:
    """What ``listener`` heard about ``queue`` up to now: a sentinel NOTIFY of its own
    arrives after anything committed before it."""
    listener.execute("NOTIFY flashq_jobs, 'sentinel'")
    heard = []
    for notify in listener.notifies(timeout=5):
        if notify.payload == "sentinel":
            break
        heard.append(notify.payload)
    return [payload for payload in heard if payload == queue]


def _push(queue: str) -> None:
    services.job_push(
        queue_name=queue, spec=JobSpec(data={"n": 1}), owner="o", actor=Actor.command("test")
    )


def test_a_push_with_nobody_waiting_sends_no_notify(other_session: psycopg.Connection) -> None:
    other_session.execute("LISTEN flashq_jobs")
    _push("quiet")
    assert _pushed_notifications(other_session, "quiet") == []


def test_a_push_notifies_while_a_pull_waits_on_its_queue_only(
    other_session: psycopg.Connection,
) -> None:
    other_session.execute("LISTEN flashq_jobs")
    other_session.execute("SELECT flashq_wait_begin('busy')")  # a waiter on 'busy'
    _push("busy")
    _push("elsewhere")
    assert _pushed_notifications(other_session, "busy") == ["busy"]
    assert _pushed_notifications(other_session, "elsewhere") == []
    # Once it stops waiting, pushes are quiet again.
    other_session.execute("SELECT flashq_wait_end('busy')")
    _push("busy")
    assert _pushed_notifications(other_session, "busy") == []


def test_a_flow_wakes_its_leaves_queues_only(other_session: psycopg.Connection) -> None:
    """A flow's parents are held back (waiting-children): only the queues its ready
    leaves went to are woken; so is nothing for a push held back by depends_on."""
    other_session.execute("LISTEN flashq_jobs")
    for queue in ("parents", "leaves", "held"):
        other_session.execute("SELECT flashq_wait_begin(%s)", [queue])
    leaf = FlowNode("leaves", JobSpec(data={}))
    middle = FlowNode("parents", JobSpec(data={}), children=(leaf,))
    services.flow_push(
        root=FlowNode("parents", JobSpec(data={}), children=(middle, leaf)),
        owner="o",
        actor=Actor.command("test"),
    )
    assert _pushed_notifications(other_session, "leaves") == ["leaves"]
    assert _pushed_notifications(other_session, "parents") == []
    target = services.job_push(
        queue_name="elsewhere", spec=JobSpec(data={}), owner="o", actor=Actor.command("test")
    ).job
    services.job_push(
        queue_name="held",
        spec=JobSpec(data={}, depends_on=(target.id,)),
        owner="o",
        actor=Actor.command("test"),
    )
    assert _pushed_notifications(other_session, "held") == []
    for queue in ("parents", "leaves", "held"):
        other_session.execute("SELECT flashq_wait_end(%s)", [queue])


def _slow_push(queue: str, hold: float, checked: threading.Event, done: threading.Event) -> None:
    """Push, then hold the transaction open for ``hold`` seconds after its wake check."""
    try:
        with transaction.atomic():
            _push(queue)  # its wake check runs here
            checked.set()
            time.sleep(hold)
        done.set()
    finally:
        connection.close()


def _long_poll_during_a_slow_push(queue: str, *, hold: float) -> tuple[list[Any], float]:
    """A push checks for waiters and holds its transaction ``hold`` seconds; meanwhile a
    20 s long poll on its queue: what it got, and how long it took."""
    token = make_token("lp", "*=*")
    checked, done = threading.Event(), threading.Event()
    pusher = threading.Thread(target=_slow_push, args=(queue, hold, checked, done))
    pusher.start()
    assert checked.wait(10)
    started = time.monotonic()
    jobs = Api().post(f"/queues/{queue}/pull", {"wait": 20}, as_=token).body["jobs"]
    elapsed = time.monotonic() - started
    pusher.join(10)
    return list(jobs), elapsed


def test_a_waiter_sees_a_push_that_checked_for_waiters_before_it_registered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The push checks (nobody waits), then the pull registers and claims before the
    push commits. Without the drain in flashq_wait_begin the claim would miss the job
    and no NOTIFY would come: the pull would sleep out its whole wait."""
    monkeypatch.setattr(notifier, "SWEEP_SECONDS", 60.0)  # no periodic re-claim to hide it
    jobs, elapsed = _long_poll_during_a_slow_push("race", hold=0.03)
    assert len(jobs) == 1
    assert elapsed < 10  # handed over at the push's commit, not at the end of the wait


def test_a_push_slower_than_the_drain_is_picked_up_at_the_next_slice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(notifier, "SWEEP_SECONDS", 0.5)
    jobs, elapsed = _long_poll_during_a_slow_push("slow", hold=1.0)
    assert len(jobs) == 1 and elapsed < 10


def test_a_registering_waiter_never_holds_up_other_pushes() -> None:
    """A push is in flight; a long poll registers on its queue and cannot drain; a second
    push to that queue must still go through before the first one commits (a queued
    exclusive lock request would make it wait for that commit)."""
    token = make_token("lp", "*=*")
    _push("busy2")  # the queue exists: a first push would hold its new row
    assert len(Api().post("/queues/busy2/pull", {}, as_=token).body["jobs"]) == 1  # and is empty
    checked, done = threading.Event(), threading.Event()
    pusher = threading.Thread(target=_slow_push, args=("busy2", 3.0, checked, done))
    pusher.start()
    assert checked.wait(10)

    def long_poll() -> None:
        try:
            Api().post("/queues/busy2/pull", {"wait": 5}, as_=token)
        finally:
            connection.close()

    poller = threading.Thread(target=long_poll)
    poller.start()
    time.sleep(0.5)  # the poller has claimed nothing and registered (trying to drain)
    _push("busy2")
    assert not done.is_set()  # went through while the first push was still in flight
    pusher.join(10)
    poller.join(10)


def test_a_finished_long_poll_leaves_its_session_clean() -> None:
    token = make_token("lp", "*=*")
    assert Api().post("/queues/idle/pull", {"wait": 0.2}, as_=token).body == {"jobs": []}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        )
        assert cursor.fetchone()[0] == 0
        cursor.execute("SELECT count(*) FROM pg_listening_channels()")
        assert cursor.fetchone()[0] == 0


def _waiting_pull(queue: str) -> tuple[threading.Thread, list[Any]]:
    """A pull waiting up to 20 s on ``queue`` in a thread, and where its answer goes."""
    token = make_token("lp", "*=*")
    answers: list[Any] = []

    def long_poll() -> None:
        try:
            answers.append(Api().post(f"/queues/{queue}/pull", {"wait": 20}, as_=token))
        finally:
            connection.close()

    poller = threading.Thread(target=long_poll)
    poller.start()
    return poller, answers


def test_a_waiting_pull_still_wakes_after_the_listener_lost_its_sessions() -> None:
    """The database drops the process's listener (both sessions): it reconnects, takes
    the queue's lock again and wakes its waiters, so a push after that still reaches
    the pull long before its wait ends."""
    poller, answers = _waiting_pull("reconn")
    with connection.cursor() as cursor:
        deadline = time.monotonic() + 10
        while True:  # the listener is up and holds the queue's lock
            cursor.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE l.locktype = 'advisory' AND a.application_name = %s",
                [notifier.APPLICATION_NAME],
            )
            if cursor.fetchone()[0]:
                break
            assert time.monotonic() < deadline, "the pull never started waiting"
            time.sleep(0.05)
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = %s AND datname = current_database()",
            [notifier.APPLICATION_NAME],
        )
        assert cursor.fetchone()[0] == 2
    time.sleep(1.5)  # reconnected (it waits 0.5 s first); the pull claimed again
    started = time.monotonic()
    _push("reconn")
    poller.join(15)
    assert not poller.is_alive(), "the pull was not woken"
    [answer] = answers
    assert answer.status == 200 and len(answer.body["jobs"]) == 1, answer.body
    assert time.monotonic() - started < 10  # woken, not at the end of its 20 s wait


def test_a_waiting_pull_still_wakes_after_only_the_lock_session_died(
    other_session: psycopg.Connection,
) -> None:
    """The notifier's lock session alone is terminated (its listener lives on): its
    queue's lock went with it, and pushes would no longer NOTIFY. The sweep notices,
    reconnects and takes the lock again, so a later push NOTIFYs and wakes the pull."""

    def lock_holders() -> list[int]:
        rows = other_session.execute(
            "SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
            "WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = %s "
            "AND a.datname = current_database()",
            [notifier.APPLICATION_NAME],
        ).fetchall()
        return [pid for (pid,) in rows]

    def until_held(what: str) -> list[int]:
        deadline = time.monotonic() + 10
        while not (holders := lock_holders()):
            assert time.monotonic() < deadline, what
            time.sleep(0.05)
        return holders

    poller, answers = _waiting_pull("lockgone")
    [lock_session] = until_held("the pull never started waiting")
    other_session.execute("SELECT pg_terminate_backend(%s)", [lock_session])
    deadline = time.monotonic() + 10
    while lock_session in lock_holders() or not lock_holders():
        assert time.monotonic() < deadline, "the queue's lock was never taken again"
        time.sleep(0.05)
    other_session.execute("LISTEN flashq_jobs")
    started = time.monotonic()
    _push("lockgone")
    assert _pushed_notifications(other_session, "lockgone") == ["lockgone"]
    poller.join(15)
    assert not poller.is_alive(), "the pull was not woken"
    [answer] = answers
    assert answer.status == 200 and len(answer.body["jobs"]) == 1, answer.body
    assert time.monotonic() - started < 10  # woken, not at the end of its 20 s wait
