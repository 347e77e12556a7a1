"""``POST /queues/{queue}/retry-failed``: the dead letters back to waiting in one call,
one audit event per call."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from compliance.audit.models import AuditEvent
from queues.models import Job

from .support import Api, Call, make_token, pull, push

pytestmark = pytest.mark.django_db


def _failed(api: Api, token: str, queue: str = "jobs:q", **fields: object) -> str:
    """A job of ``queue`` that failed its only attempt."""
    job = push(api, token, queue, max_attempts=1, **fields)
    [leased] = pull(api, token, queue)
    assert leased["id"] == job["id"]
    body = {"lease_id": leased["lease_id"], "error": "boom"}
    assert api.post(f"/jobs/{job['id']}/fail", body, as_=token).body["state"] == "failed"
    return str(job["id"])


def _finished(job_id: str, minutes_ago: int) -> None:
    Job.objects.filter(id=job_id).update(
        finished_at=timezone.now() - timedelta(minutes=minutes_ago)
    )


def _retry_failed(api: Api, token: str, body: dict[str, Any], queue: str = "jobs:q") -> Call:
    return api.post(f"/queues/{queue}/retry-failed", body, as_=token)


def test_it_sends_failed_jobs_back_to_waiting_with_fresh_attempts(api: Api, full: str) -> None:
    ids = [_failed(api, full) for _ in range(3)]
    call = _retry_failed(api, full, {"limit": 10})
    assert (call.status, call.body) == (200, {"retried": 3})
    for job in Job.objects.filter(id__in=ids):
        assert (job.state, job.attempts, job.finished_at) == ("waiting", 0, None)
        assert job.errors[0]["error"] == "boom"  # history is kept
    assert sorted(job["id"] for job in pull(api, full, count=5)) == sorted(ids)


def test_range_and_limit_are_honoured_oldest_first(api: Api, full: str) -> None:
    ids = [_failed(api, full) for _ in range(5)]
    for job_id, minutes in zip(ids, [50, 40, 30, 20, 10], strict=True):
        _finished(job_id, minutes)
    now = timezone.now()
    body = {
        "since": (now - timedelta(minutes=45)).isoformat(),
        "until": (now - timedelta(minutes=15)).isoformat(),
        "limit": 2,
    }
    assert _retry_failed(api, full, body).body == {"retried": 2}
    states = dict(Job.objects.values_list("id", "state"))
    assert [states[job_id] for job_id in map(uuid.UUID, ids)] == [
        "failed",  # before since
        "waiting",
        "waiting",
        "failed",  # in range, past the limit
        "failed",  # at or after until
    ]
    [event] = AuditEvent.objects.filter(action="retryFailed", outcome="ok")
    assert event.job_ids == ids[1:3] and event.queue == "jobs:q"
    assert event.details["count"] == 2


def test_other_queues_and_other_states_are_untouched(api: Api, full: str) -> None:
    mine = _failed(api, full)
    theirs = _failed(api, full, "jobs:other")
    cancelled = push(api, full)
    api.post(f"/jobs/{cancelled['id']}/cancel", as_=full)
    assert _retry_failed(api, full, {"limit": 100}).body == {"retried": 1}
    assert Job.objects.get(id=mine).state == "waiting"
    assert Job.objects.get(id=theirs).state == "failed"
    assert Job.objects.get(id=cancelled["id"]).state == "cancelled"


def test_one_audit_event_per_call_even_when_nothing_matched(api: Api, full: str) -> None:
    ids = [_failed(api, full) for _ in range(3)]
    _retry_failed(api, full, {"limit": 100})
    assert _retry_failed(api, full, {"limit": 100}).body == {"retried": 0}
    events = list(AuditEvent.objects.filter(action="retryFailed", outcome="ok").order_by("id"))
    assert [sorted(event.job_ids) for event in events] == [sorted(ids), []]


def test_it_needs_the_retry_verb(api: Api, full: str) -> None:
    job_id = _failed(api, full)
    puller = make_token("puller", "jobs:*=pull,ack,fail,getJob,update")
    assert _retry_failed(api, puller, {"limit": 10}).status == 403
    stranger = make_token("stranger", "other:*=*")
    assert _retry_failed(api, stranger, {"limit": 10}).status in (403, 404)
    assert Job.objects.get(id=job_id).state == "failed"
    retrier = make_token("retrier", "jobs:q=retry")
    assert _retry_failed(api, retrier, {"limit": 10}).body == {"retried": 1}


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({}, "/limit"),
        ({"limit": 0}, "/limit"),
        ({"limit": 10_001}, "/limit"),
        ({"limit": "5"}, "/limit"),
        ({"limit": 5, "since": "yesterday"}, "/since"),
        ({"limit": 5, "since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "/until"),
        ({"limit": 5, "state": "failed"}, "/state"),
    ],
)
def test_bad_bodies_are_400_naming_the_field_and_change_nothing(
    api: Api, full: str, body: dict[str, object], path: str
) -> None:
    job_id = _failed(api, full)
    call = _retry_failed(api, full, body)
    assert call.status == 400
    assert path in [error["path"] for error in call.body["errors"]]
    assert Job.objects.get(id=job_id).state == "failed"


def test_a_failed_job_whose_key_an_unfinished_job_holds_stays_failed(api: Api, full: str) -> None:
    free = _failed(api, full, key="order-2")
    held = _failed(api, full, key="order-1")
    fresh = push(api, full, key="order-1")  # the key is free again once the job failed
    assert fresh["id"] != held
    assert _retry_failed(api, full, {"limit": 10}).body == {"retried": 1}
    assert Job.objects.get(id=held).state == "failed"
    assert Job.objects.get(id=free).state == "waiting"
    [event] = AuditEvent.objects.filter(action="retryFailed", outcome="ok")
    assert event.details["key_held"] == [held]


def test_an_unknown_queue_is_404(api: Api, full: str) -> None:
    assert _retry_failed(api, full, {"limit": 5}, "jobs:nothing").status == 404
