from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from queues.models import Job

from .support import Api, make_token, pull, push

pytestmark = pytest.mark.django_db


def test_pull_leases_jobs_with_what_a_worker_needs(api: Api, full: str) -> None:
    pushed = push(api, full, data={"userId": "u1"})
    [job] = pull(api, full, count=10, lease=120)
    assert job["id"] == pushed["id"]
    assert job["data"] == {"userId": "u1"}
    assert job["attempts"] == 1
    assert job["lease_id"]
    stored = Job.objects.get(id=job["id"])
    assert stored.state == "active" and str(stored.lease_id) == job["lease_id"]
    assert stored.lease_expires_at is not None
    left = (stored.lease_expires_at - timezone.now()).total_seconds()
    assert 100 < left <= 120


def test_pull_on_an_empty_or_unknown_queue_is_an_empty_list(api: Api, full: str) -> None:
    assert pull(api, full, queue="nothing-here") == []


def test_a_leased_job_is_not_handed_out_again(api: Api, full: str) -> None:
    push(api, full)
    assert len(pull(api, full)) == 1
    assert pull(api, full) == []


def test_each_claimed_job_gets_its_own_lease(api: Api, full: str) -> None:
    for _ in range(3):
        push(api, full)
    jobs = pull(api, full, count=3)
    assert len({job["lease_id"] for job in jobs}) == 3


def test_higher_priority_first_then_oldest_first(api: Api, full: str) -> None:
    low = push(api, full, priority=0)
    high = push(api, full, priority=10)
    low2 = push(api, full, priority=0)
    ids = [job["id"] for job in pull(api, full, count=3)]
    assert ids == [high["id"], low["id"], low2["id"]]


def test_a_delayed_high_priority_job_never_blocks_ready_jobs(api: Api, full: str) -> None:
    delayed = push(api, full, priority=100, delay=60_000)
    ready = push(api, full, priority=0)
    assert [job["id"] for job in pull(api, full, count=5)] == [ready["id"]]
    Job.objects.filter(id=delayed["id"]).update(run_at=timezone.now() - timedelta(seconds=1))
    assert [job["id"] for job in pull(api, full, count=5)] == [delayed["id"]]


def test_count_is_honoured(api: Api, full: str) -> None:
    api.post("/queues/jobs:q/jobs/batch", {"jobs": [{"data": {}}] * 7}, as_=full)
    assert len(pull(api, full, count=5)) == 5
    assert len(pull(api, full, count=5)) == 2


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"count": 0}, "/count"),
        ({"count": 1001}, "/count"),
        ({"count": "5"}, "/count"),
        ({"lease": 0}, "/lease"),
        ({"lease": 3601}, "/lease"),
        ({"wait": 31}, "/wait"),
        ({"wait": -1}, "/wait"),
        ({"colour": 1}, "/colour"),
    ],
)
def test_bad_pull_parameters_are_400(
    api: Api, full: str, body: dict[str, object], path: str
) -> None:
    push(api, full)
    call = api.post("/queues/jobs:q/pull", body, as_=full)
    assert call.status == 400
    assert path in [error["path"] for error in call.body["errors"]]
    assert Job.objects.get().state == "waiting"


def test_a_paused_queue_hands_out_nothing_until_resumed(api: Api, full: str) -> None:
    push(api, full)
    assert api.post("/queues/jobs:q/pause", as_=full).body["paused"] is True
    assert pull(api, full) == []
    assert push(api, full)["state"] == "waiting"  # pushing still works
    assert api.post("/queues/jobs:q/resume", as_=full).body["paused"] is False
    assert len(pull(api, full, count=5)) == 2


def test_a_job_past_its_ttl_is_not_handed_out(api: Api, full: str) -> None:
    job = push(api, full, ttl=1000)
    Job.objects.filter(id=job["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert pull(api, full) == []
    assert api.get(f"/jobs/{job['id']}", as_=full).body["state"] == "expired"


@pytest.mark.django_db(transaction=True)
def test_a_long_poll_wakes_when_a_job_is_pushed() -> None:
    token = make_token("lp", "*=*")
    results: dict[str, object] = {}

    def waiting_pull() -> None:
        started = time.monotonic()
        call = Api().post("/queues/lp/pull", {"wait": 20}, as_=token)
        results["elapsed"] = time.monotonic() - started
        results["jobs"] = call.body["jobs"]
        connection.close()

    puller = threading.Thread(target=waiting_pull)
    puller.start()
    time.sleep(0.5)
    pushed = push(Api(), token, queue="lp")
    puller.join(timeout=25)
    assert [job["id"] for job in results["jobs"]] == [pushed["id"]]  # type: ignore[attr-defined]
    # Woken by the push, not by the end of the 20 s wait.
    assert results["elapsed"] < 10  # type: ignore[operator]


@pytest.mark.django_db(transaction=True)
def test_a_long_poll_with_nothing_to_do_returns_empty_after_its_wait() -> None:
    token = make_token("lp", "*=*")
    started = time.monotonic()
    assert Api().post("/queues/idle/pull", {"wait": 0.5}, as_=token).body == {"jobs": []}
    assert time.monotonic() - started >= 0.5
