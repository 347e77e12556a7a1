"""GET /jobs/{id}/wait: the job as getJob shows it, as soon as it has finished
(``finished: true``) or when the timeout runs out (``finished: false``). Access as
getJob's, one waitJob event per call, the long-poll caps. On PostgreSQL the wait wakes on
the finishing transaction's NOTIFY; the tests that show it give the wait slices longer
than its timeout, so nothing but a notification can end it early."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from django.db import OperationalError, connection, transaction
from django.utils import timezone
from pytest_django.fixtures import SettingsWrapper

from compliance.models import AuditEvent
from queues import dependents, waiting, waitslots
from queues.models import Job, JobState
from queues.wakes import Wake

from .support import Api, Call, clear_audit, in_a_thread, make_token, postgres_only, pull, push

pytestmark = pytest.mark.django_db

SECRET = {"userId": "u1", "ssn": "078-05-1120", "n": 1}
#: Longer than any wait these tests expect to end early: one still running at the end of
#: the test's join is a failure, not a slow pass.
LONG_MS = 30_000
JOIN_SECONDS = 20


def _wait(api: Api, token: str, job_id: str, query: str = "?timeout_ms=0") -> Call:
    return api.get(f"/jobs/{job_id}/wait{query}", as_=token)


def _completed(api: Api, token: str, queue: str = "jobs:q", **fields: Any) -> dict[str, Any]:
    job = push(api, token, queue=queue, **fields)
    [leased] = pull(api, token, queue=queue)
    call = api.post(
        f"/jobs/{job['id']}/ack", {"lease_id": leased["lease_id"], "result": 7}, as_=token
    )
    assert call.status == 200, call.body
    return job


@pytest.fixture
def no_slot(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every attempt to take a long-poll slot (none is granted)."""
    asked: list[str] = []

    def take(owner: str, *, total_cap: int, owner_cap: int) -> bool:
        asked.append(owner)
        return False

    monkeypatch.setattr(waitslots.SLOTS, "take", take)
    return asked


# -- answers -----------------------------------------------------------------------------


def test_a_finished_job_is_answered_at_once_without_a_slot(
    api: Api, full: str, no_slot: list[str]
) -> None:
    job = _completed(api, full)
    call = _wait(api, full, job["id"], f"?timeout_ms={LONG_MS}")
    assert call.status == 200, call.body
    assert (call.body["state"], call.body["finished"], call.body["result"]) == (
        "completed",
        True,
        7,
    )
    assert no_slot == [] and "Retry-After" not in call.headers
    # The same job as getJob shows it, plus finished.
    shown = api.get(f"/jobs/{job['id']}", as_=full).body
    assert {key: value for key, value in call.body.items() if key != "finished"} == shown


@pytest.mark.django_db(transaction=True)
def test_an_unfinished_job_is_answered_after_the_timeout_with_finished_false() -> None:
    token = make_token("waiter", "*=*")
    job = push(Api(), token)
    call = _wait(Api(), token, job["id"], "?timeout_ms=300")
    assert call.status == 200
    assert (call.body["state"], call.body["finished"]) == ("waiting", False)
    assert "Retry-After" not in call.headers
    assert waitslots.SLOTS.held() == 0


def test_a_timeout_of_zero_answers_at_once_without_a_slot(
    api: Api, full: str, no_slot: list[str]
) -> None:
    job = push(api, full)
    call = _wait(api, full, job["id"], "?timeout_ms=0")
    assert (call.status, call.body["finished"]) == (200, False)
    assert no_slot == [] and not Job.objects.get(id=job["id"]).watched


@pytest.mark.parametrize("finish", ["cancel", "fail", "ttl"])
def test_cancelled_failed_and_expired_jobs_count_as_finished(
    api: Api, full: str, finish: str
) -> None:
    job = push(api, full, ttl=60_000)
    if finish == "cancel":
        assert api.post(f"/jobs/{job['id']}/cancel", as_=full).status == 200
    elif finish == "fail":
        [leased] = pull(api, full)
        body = {"lease_id": leased["lease_id"], "error": "boom", "retry": False}
        assert api.post(f"/jobs/{job['id']}/fail", body, as_=full).status == 200
    else:  # past its ttl: reported expired before the sweeper records it
        Job.objects.filter(id=job["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    call = _wait(api, full, job["id"], "?timeout_ms=5000")
    expected = {"cancel": "cancelled", "fail": "failed", "ttl": "expired"}[finish]
    assert (call.body["state"], call.body["finished"]) == (expected, True)


def test_the_default_timeout_is_documented_and_bounded(api: Api, full: str) -> None:
    schema = api.client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    operation = schema.json()["paths"]["/api/v1/jobs/{job_id}/wait"]["get"]
    [timeout] = [p for p in operation["parameters"] if p["name"] == "timeout_ms"]
    assert timeout["in"] == "query"
    assert (timeout["schema"]["minimum"], timeout["schema"]["maximum"]) == (0, 30_000)
    assert timeout["schema"]["default"] == 10_000
    answered = operation["responses"]["200"]
    assert "finished" in str(schema.json()["components"]["schemas"]["JobWaitOut"])
    assert "long poll" in answered["headers"]["Retry-After"]["description"]


@pytest.mark.parametrize("query", ["?timeout_ms=-1", "?timeout_ms=30001", "?timeout_ms=soon"])
def test_a_bad_timeout_is_a_400_naming_the_parameter(api: Api, full: str, query: str) -> None:
    job = push(api, full)
    call = _wait(api, full, job["id"], query)
    assert call.status == 400
    assert [error["path"] for error in call.body["errors"]] == ["/timeout_ms"]


def test_an_unknown_parameter_is_a_400(api: Api, full: str) -> None:
    job = push(api, full)
    assert _wait(api, full, job["id"], "?timeout_ms=0&timeout=5").status == 400


# -- who may wait, and what they see -----------------------------------------------------


def test_access_is_getjobs_own(api: Api, full: str) -> None:
    job = push(api, full, queue="jobs:q")
    pusher = make_token("pusher", "jobs:*=push")
    stranger = make_token("stranger", "other:*=*")
    assert _wait(api, pusher, job["id"]).status == 403
    assert _wait(api, stranger, job["id"]).status == 404  # cannot see the queue at all
    assert _wait(api, full, "00000000-0000-0000-0000-000000000000").status == 404
    assert _wait(api, full, "not-a-uuid").status == 404
    assert _wait(api, make_token("reader", "jobs:*=getJob"), job["id"]).status == 200


def test_the_job_is_masked_as_getjob_masks_it(api: Api, full: str) -> None:
    job = push(api, full, data=SECRET)
    reader = make_token("reader", "jobs:*=getJob")
    revealer = make_token("revealer", "jobs:*=getJob,reveal")
    masked = _wait(api, reader, job["id"]).body
    assert masked["data"] == {**SECRET, "ssn": "[MASKED]"}
    assert _wait(api, revealer, job["id"]).body["data"] == SECRET
    trail = str(list(AuditEvent.objects.values_list("details", flat=True)))
    assert "078-05-1120" not in trail


def test_the_links_name_only_jobs_the_token_may_read_as_getjob_does(api: Api) -> None:
    owner = make_token("owner", "*=*")
    body = {"job": {"data": {}}, "children": [{"queue": "jobs:q", "job": {"data": {}}}]}
    tree = api.post("/queues/secret:p/flows", body, as_=owner).body
    child = tree["children"][0]["id"]
    hidden, seen = push(api, owner, queue="secret:d")["id"], push(api, owner)["id"]
    dependent = push(api, owner, depends_on=[hidden, seen])["id"]
    reader = make_token("reader", "jobs:*=getJob")
    waited = _wait(api, reader, child).body
    assert waited["parent"] is None and tree["id"] not in str(waited)
    assert _wait(api, reader, dependent).body["depends_on"] == [seen]
    assert _wait(api, owner, child).body["parent"] == tree["id"]


def test_each_call_records_one_waitjob_event_saying_whether_it_finished(
    api: Api, full: str
) -> None:
    waiting = push(api, full)
    done = _completed(api, full, queue="jobs:done")
    clear_audit()
    for job_id in (waiting["id"], done["id"]):
        call = _wait(api, full, job_id)
        [event] = AuditEvent.objects.filter(request_id=call.headers["X-Request-ID"])
        assert (event.action, event.outcome, event.actor) == ("waitJob", "ok", "token:full")
        assert event.job_ids == [job_id]
        assert event.details == {"finished": job_id == done["id"]}
    assert [e.queue for e in AuditEvent.objects.order_by("id")] == ["jobs:q", "jobs:done"]


# -- the long-poll caps ------------------------------------------------------------------


def test_past_the_cap_an_unfinished_job_is_answered_at_once_with_retry_after(
    api: Api, full: str, no_slot: list[str]
) -> None:
    job = push(api, full)
    call = _wait(api, full, job["id"], f"?timeout_ms={LONG_MS}")
    assert (call.status, call.body["state"], call.body["finished"]) == (200, "waiting", False)
    assert call.headers["Retry-After"] == "2"
    assert len(no_slot) == 1
    [event] = AuditEvent.objects.filter(request_id=call.headers["X-Request-ID"])
    assert event.details == {"finished": False}


@pytest.mark.django_db(transaction=True)
def test_past_the_cap_a_job_that_finished_meanwhile_is_answered_without_retry_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    full = make_token("waiter", "*=*")
    api = Api()
    job = push(api, full)

    def finish_then_refuse(owner: str, *, total_cap: int, owner_cap: int) -> bool:
        # Between the first read and the slot, the job is cancelled (by another client:
        # the slot is taken on the event loop); every slot is taken.
        cancelled = in_a_thread(lambda: Api().post(f"/jobs/{job['id']}/cancel", as_=full))
        assert cancelled.status == 200
        return False

    monkeypatch.setattr(waitslots.SLOTS, "take", finish_then_refuse)
    call = _wait(api, full, job["id"], f"?timeout_ms={LONG_MS}")
    assert (call.body["state"], call.body["finished"]) == ("cancelled", True)
    assert "Retry-After" not in call.headers


@pytest.mark.django_db(transaction=True)
def test_a_wait_holds_a_slot_of_its_family_while_it_waits(settings: SettingsWrapper) -> None:
    settings.LONG_POLL_MAX_WAITERS = 4
    settings.LONG_POLL_MAX_WAITERS_PER_FAMILY = 1
    token = make_token("waiter", "*=*")
    job = push(Api(), token)
    with _waiting(token, job["id"]) as answers:
        # The family's one slot is the first wait's: a pull that would wait is refused.
        call = Api().post("/queues/idle/pull", {"wait": 20}, as_=token)
        assert call.headers["Retry-After"] == "2"
        assert Api().post(f"/jobs/{job['id']}/cancel", as_=token).status == 200
    [answer] = answers
    assert (answer.body["state"], answer.body["finished"]) == ("cancelled", True)
    assert waitslots.SLOTS.held() == 0


def test_a_slot_is_given_back_when_the_wait_fails(
    api: Api, full: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = push(api, full)

    async def database_gone(self: object, seconds: float) -> None:
        raise OperationalError("the database went away mid-wait")

    monkeypatch.setattr(Wake, "wait", database_gone)
    call = _wait(api, full, job["id"], f"?timeout_ms={LONG_MS}")
    assert call.status == 503 and "Retry-After" in call.headers
    assert waitslots.SLOTS.held() == 0


# -- waking up ---------------------------------------------------------------------------


def _threaded_wait(token: str, job_id: str, answers: list[Call]) -> None:
    try:
        answers.append(_wait(Api(), token, job_id, f"?timeout_ms={LONG_MS}"))
    finally:
        connection.close()


@contextmanager
def _waiting(token: str, job_id: str) -> Iterator[list[Call]]:
    """A wait for ``job_id`` in a thread for the block (which starts once the wait holds
    its slot and has marked the job watched); on the way out its answer is joined."""
    answers: list[Call] = []
    thread = threading.Thread(target=_threaded_wait, args=(token, job_id, answers))
    thread.start()
    deadline = time.monotonic() + JOIN_SECONDS
    while not Job.objects.filter(id=job_id, watched=True).exists():
        assert thread.is_alive(), answers
        assert time.monotonic() < deadline, "the wait never started"
        time.sleep(0.02)
    yield answers
    thread.join(timeout=JOIN_SECONDS)
    # Well before its 30 s timeout: woken by the finish.
    assert not thread.is_alive(), "the wait was not woken"


@pytest.fixture
def notified_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Slices longer than any wait: only a notification can end one early."""
    monkeypatch.setattr(waiting, "SLICE_SECONDS", 3600.0)


@pytest.mark.django_db(transaction=True)
def test_a_wait_wakes_when_the_job_is_acked() -> None:
    token = make_token("waiter", "*=*")
    job = push(Api(), token)
    with _waiting(token, job["id"]) as answers:
        _ack(token, job["id"])
    [answer] = answers
    assert (answer.status, answer.body["state"], answer.body["finished"]) == (
        200,
        "completed",
        True,
    )


def _ack(token: str, job_id: str) -> None:
    [leased] = pull(Api(), token)
    body = {"lease_id": leased["lease_id"], "result": {"ok": True}}
    assert Api().post(f"/jobs/{job_id}/ack", body, as_=token).status == 200


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_finishing_transaction_that_sees_the_mark_wakes_the_wait(notified_only: None) -> None:
    """The engine's contract (dependents.jobs_finished), played by hand: a transaction
    that finishes a watched job notifies its id at commit, and that alone ends the wait."""
    token = make_token("waiter", "*=*")
    job = push(Api(), token)
    with _waiting(token, job["id"]) as answers, transaction.atomic():
        finished = Job.objects.select_for_update().get(id=job["id"])
        Job.objects.filter(id=job["id"]).update(state=JobState.CANCELLED)
        assert finished.watched
        dependents.jobs_finished([finished.id], now=timezone.now())
    [answer] = answers
    assert (answer.body["state"], answer.body["finished"]) == ("cancelled", True)


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_finish_that_locked_the_row_before_the_mark_is_not_missed(notified_only: None) -> None:
    """The other order: the job's row is locked by a finishing transaction that read it
    unwatched (so it will not notify) before the wait marks it. The wait's mark waits for
    that commit, then its read sees the finished state."""
    token = make_token("waiter", "*=*")
    job = push(Api(), token)
    answers: list[Call] = []
    thread = threading.Thread(target=_threaded_wait, args=(token, job["id"], answers))
    with transaction.atomic():
        locked = Job.objects.select_for_update().get(id=job["id"])
        assert not locked.watched  # so this transaction sends no notification
        Job.objects.filter(id=job["id"]).update(state=JobState.CANCELLED)
        thread.start()
        _until_blocked_on_a_lock(thread)
    thread.join(timeout=JOIN_SECONDS)
    assert not thread.is_alive(), "the wait missed a finish that sent no notification"
    [answer] = answers
    assert (answer.body["state"], answer.body["finished"]) == ("cancelled", True)


def _until_blocked_on_a_lock(thread: threading.Thread) -> None:
    """Until another session waits for a row lock (the wait's watched mark)."""
    deadline = time.monotonic() + JOIN_SECONDS
    with connection.cursor() as cursor:
        while True:
            # Inside a transaction the activity view is a snapshot: take a fresh one.
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE 'UPDATE %%watched%%' AND pid <> pg_backend_pid()"
            )
            if cursor.fetchone()[0]:
                return
            assert thread.is_alive() and time.monotonic() < deadline, "the mark never waited"
            time.sleep(0.02)


@postgres_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "finish",
    ["ack", "fail", "cancel"],
)
def test_the_engine_notifies_the_wait_on_every_finish(finish: str, notified_only: None) -> None:
    token = make_token("waiter", "*=*")
    job = push(Api(), token, max_attempts=1)
    finishers: dict[str, Callable[[], None]] = {
        "ack": lambda: _ack(token, job["id"]),
        "fail": lambda: _fail(token, job["id"]),
        "cancel": lambda: _cancel(token, job["id"]),
    }
    with _waiting(token, job["id"]) as answers:
        finishers[finish]()
    [answer] = answers
    expected = {"ack": "completed", "fail": "failed", "cancel": "cancelled"}[finish]
    assert (answer.body["state"], answer.body["finished"]) == (expected, True)


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_wait_for_a_flow_wakes_when_a_failed_child_fails_its_parent(
    notified_only: None,
) -> None:
    """The parent is finished by settling, not by a call of its own: the settling round
    notifies it too, since the wait marked it watched."""
    token = make_token("waiter", "*=*")
    flow = {"job": {"data": {}}, "children": [{"queue": "jobs:child", "job": {"data": {}}}]}
    tree = Api().post("/queues/jobs:q/flows", flow, as_=token).body
    with _waiting(token, tree["id"]) as answers:
        [child] = pull(Api(), token, queue="jobs:child")
        body = {"lease_id": child["lease_id"], "error": "boom", "retry": False}
        assert Api().post(f"/jobs/{child['id']}/fail", body, as_=token).status == 200
    [answer] = answers
    assert (answer.body["state"], answer.body["error_code"]) == ("failed", "child_failed")
    assert answer.body["finished"] is True


def _fail(token: str, job_id: str) -> None:
    [leased] = pull(Api(), token)
    body = {"lease_id": leased["lease_id"], "error": "boom"}
    assert Api().post(f"/jobs/{job_id}/fail", body, as_=token).body["state"] == "failed"


def _cancel(token: str, job_id: str) -> None:
    assert Api().post(f"/jobs/{job_id}/cancel", as_=token).status == 200


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_wait_leaves_its_connection_listening_to_nothing() -> None:
    token = make_token("waiter", "*=*")
    job = push(Api(), token)
    assert _wait(Api(), token, job["id"], "?timeout_ms=200").body["finished"] is False
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_listening_channels()")
        assert cursor.fetchone() == (0,)
        cursor.execute("SELECT pg_notify(%s, %s)", [dependents.DONE_CHANNEL, job["id"]])
    # Nothing of the wait's channel reaches this connection any more.
    assert list(connection.connection.notifies(timeout=0.2)) == []


def test_a_wait_marks_an_unfinished_job_watched_and_a_finished_one_not(api: Api, full: str) -> None:
    waiting = push(api, full)
    done = _completed(api, full, queue="jobs:done")
    _wait(api, full, waiting["id"], "?timeout_ms=50")
    _wait(api, full, done["id"], "?timeout_ms=50")
    assert Job.objects.get(id=waiting["id"]).watched
    assert not Job.objects.get(id=done["id"]).watched


@pytest.fixture(autouse=True)
def _slots_given_back() -> Iterator[None]:
    yield
    assert waitslots.SLOTS.held() == 0
