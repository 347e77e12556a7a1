"""The one-statement acks (queues.services.reports._complete_live) under a concurrent
writer: the rows it locks may change before it gets them, and it must then judge each
row as it is after that change (PostgreSQL re-checks a locked row's conditions), all or
nothing as ever."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from queues.models import Job, JobState

from .personas import make_full_token
from .support import Api, postgres_only, pull, push

pytestmark = [postgres_only, pytest.mark.django_db(transaction=True)]


def _held(change: Callable[[], None]) -> tuple[threading.Event, threading.Thread]:
    """A transaction in a thread of its own that makes ``change`` (holding its rows'
    locks) and commits once the returned event is set."""
    made, release = threading.Event(), threading.Event()

    def run() -> None:
        try:
            with transaction.atomic():
                change()
                made.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    assert made.wait(timeout=30)
    return release, thread


def _acked_meanwhile(api: Api, token: str, body: dict[str, Any], change: Callable[[], None]) -> Any:
    """The batch ack ``body``, sent while ``change`` holds its rows; ``change`` commits
    once the ack is waiting for them."""
    release, holder = _held(change)
    answer: list[Any] = []

    def ack() -> None:
        try:
            answer.append(Api().post("/jobs/ack", body, as_=token))
        finally:
            connection.close()

    acker = threading.Thread(target=ack)
    acker.start()
    acker.join(timeout=1)  # it now waits for the held row
    assert acker.is_alive(), "the ack did not wait for the held row"
    release.set()
    holder.join(timeout=30)
    acker.join(timeout=30)
    assert answer
    return answer[0]


def _jobs(api: Api, token: str) -> list[dict[str, Any]]:
    for n in range(2):
        push(api, token, data={"n": n})
    return sorted(pull(api, token, count=2, lease=60), key=lambda job: job["id"])


def _items(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"id": job["id"], "lease_id": job["lease_id"], "result": {"i": i}}
        for i, job in enumerate(jobs)
    ]


def test_a_heartbeat_meanwhile_leaves_the_ack_live(api: Api) -> None:
    token = make_full_token()
    jobs = _jobs(api, token)

    def heartbeat() -> None:
        later = timezone.now() + timedelta(minutes=5)
        Job.objects.filter(id=jobs[1]["id"]).update(lease_expires_at=later, progress=50)

    call = _acked_meanwhile(api, token, {"jobs": _items(jobs)}, heartbeat)
    assert call.status == 200, call.body
    stored = {str(job.id): job for job in Job.objects.all()}
    assert [stored[job["id"]].state for job in jobs] == [JobState.COMPLETED] * 2
    assert [stored[job["id"]].result for job in jobs] == [{"i": 0}, {"i": 1}]
    assert stored[jobs[1]["id"]].progress == 50


def test_a_recovery_meanwhile_makes_the_whole_batch_stale(api: Api) -> None:
    token = make_full_token()
    jobs = _jobs(api, token)

    def recover() -> None:
        Job.objects.filter(id=jobs[1]["id"]).update(
            state=JobState.WAITING, lease_expires_at=None, lease_id=None
        )

    call = _acked_meanwhile(api, token, {"jobs": _items(jobs)}, recover)
    assert call.status == 409, call.body
    assert [error["path"] for error in call.body["errors"]] == ["/jobs/1/lease_id"]
    first = Job.objects.get(id=jobs[0]["id"])
    assert (first.state, first.result) == (JobState.ACTIVE, None)


def test_an_ack_of_the_same_job_meanwhile_is_a_replay(api: Api) -> None:
    token = make_full_token()
    jobs = _jobs(api, token)
    items = _items(jobs)

    def first_ack() -> None:
        answer = Api().post(
            f"/jobs/{jobs[1]['id']}/ack",
            {"lease_id": jobs[1]["lease_id"], "result": {"first": True}},
            as_=token,
        )
        assert answer.status == 200

    # The single ack runs in the holder's transaction: it commits on release.
    call = _acked_meanwhile(api, token, {"jobs": items}, first_ack)
    assert call.status == 200, call.body
    stored = {str(job.id): job for job in Job.objects.all()}
    assert stored[jobs[0]["id"]].result == {"i": 0}
    assert stored[jobs[1]["id"]].result == {"first": True}
