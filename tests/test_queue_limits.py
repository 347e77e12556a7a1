"""A queue's rate limit (setRateLimit) and concurrency bound what pull hands out, in
total across processes and app servers."""

from __future__ import annotations

import multiprocessing
from datetime import timedelta
from typing import Any

import pytest
from django.db import connections
from django.utils import timezone

from compliance.models import AuditEvent
from queues.models import Job, JobState, Queue

from .support import Api, make_token, postgres_only, pull

pytestmark = pytest.mark.django_db

HOUR_MS = 3_600_000


def _fill(api: Api, token: str, queue: str, n: int) -> None:
    batch = {"jobs": [{"data": {"n": i}} for i in range(n)]}
    assert api.post(f"/queues/{queue}/jobs/batch", batch, as_=token).status == 201


def _set(api: Api, token: str, queue: str, what: str, body: dict[str, int] | None) -> Any:
    method = "PUT" if body is not None else "DELETE"
    return api.request(method, f"/queues/{queue}/{what}", body, as_=token)


def test_set_rate_limit_bounds_what_pull_hands_out(api: Api, full: str) -> None:
    call = _set(api, full, "jobs:r", "rate-limit", {"max": 10, "duration_ms": HOUR_MS})
    assert call.status == 200
    assert call.body["rate_limit"] == {"max": 10, "duration_ms": HOUR_MS}
    assert Queue.objects.filter(name="jobs:r").exists()  # created by the call
    _fill(api, full, "jobs:r", 25)
    assert len(pull(api, full, queue="jobs:r", count=4)) == 4
    assert len(pull(api, full, queue="jobs:r", count=100)) == 6  # 10 remain of the budget
    assert pull(api, full, queue="jobs:r", count=100) == []
    assert _set(api, full, "jobs:r", "rate-limit", None).body["rate_limit"] is None
    assert len(pull(api, full, queue="jobs:r", count=100)) == 15
    actions = list(AuditEvent.objects.filter(queue="jobs:r").values_list("action", "actor"))
    assert ("setRateLimit", "token:full") in actions
    assert ("removeRateLimit", "token:full") in actions


def test_concurrency_bounds_active_jobs(api: Api, full: str) -> None:
    _fill(api, full, "jobs:c", 10)
    assert _set(api, full, "jobs:c", "concurrency", {"max": 3}).body["concurrency"] == 3
    first = pull(api, full, queue="jobs:c", count=100)
    assert len(first) == 3
    assert pull(api, full, queue="jobs:c", count=100) == []
    ack = {"lease_id": first[0]["lease_id"]}
    assert api.post(f"/jobs/{first[0]['id']}/ack", ack, as_=full).status == 200
    assert len(pull(api, full, queue="jobs:c", count=100)) == 1
    # An expired lease frees its slot: the pull recovers it first.
    Job.objects.filter(id=first[1]["id"]).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert len(pull(api, full, queue="jobs:c", count=100)) == 1
    assert Job.objects.filter(queue__name="jobs:c", state=JobState.ACTIVE).count() == 3


@pytest.mark.parametrize(
    ("what", "body"),
    [
        ("rate-limit", {"max": 0, "duration_ms": 1000}),
        ("rate-limit", {"max": 10}),
        ("rate-limit", {"max": 10, "duration_ms": 1000, "burst": 5}),
        ("rate-limit", {"max": "10", "duration_ms": 1000}),
        ("concurrency", {"max": 0}),
        ("concurrency", {}),
    ],
)
def test_bad_limits_are_400_and_change_nothing(
    api: Api, full: str, what: str, body: dict[str, Any]
) -> None:
    _fill(api, full, "jobs:q", 1)
    assert _set(api, full, "jobs:q", what, body).status == 400
    queue = Queue.objects.get(name="jobs:q")
    assert (queue.rate_limit_max, queue.concurrency_max) == (None, None)


def _pull_all(token: str, queue: str, results: Any) -> None:
    connections.close_all()  # a fresh connection per process, never the parent's
    api = Api()
    got = 0
    for _ in range(15):
        call = api.post(f"/queues/{queue}/pull", {"count": 7, "lease": 600}, as_=token)
        got += len(call.body["jobs"])
    results.put(got)
    connections.close_all()


def _race(token: str, queue: str) -> int:
    connections.close_all()
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    workers = [context.Process(target=_pull_all, args=(token, queue, results)) for _ in range(4)]
    for worker in workers:
        worker.start()
    total = sum(int(results.get(timeout=120)) for _ in workers)
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    return total


@postgres_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("what", "body", "expected"),
    [
        ("rate-limit", {"max": 20, "duration_ms": HOUR_MS}, 20),
        ("concurrency", {"max": 5}, 5),
    ],
)
def test_a_queue_limit_holds_in_total_across_processes(
    what: str, body: dict[str, int], expected: int
) -> None:
    token = make_token("racer", "race=push,pull,admin")
    api = Api()
    _fill(api, token, "race", 200)
    assert _set(api, token, "race", what, body).status == 200
    assert _race(token, "race") == expected  # 4 processes x 15 pulls of 7
    assert Job.objects.filter(state=JobState.ACTIVE).count() == expected
