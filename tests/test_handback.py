"""release and snooze: a worker gives back a job it holds, the attempt not counted."""

from __future__ import annotations

import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from compliance.audit.models import AuditEvent
from queues.models import Job

from .support import Api, Call, make_token, pull, push

pytestmark = pytest.mark.django_db


def _release(api: Api, token: str, job: dict[str, object], lease_id: object = None) -> Call:
    body = {"lease_id": lease_id or job["lease_id"]}
    return api.post(f"/jobs/{job['id']}/release", body, as_=token)


def _snooze(api: Api, token: str, job: dict[str, object], delay_ms: object) -> Call:
    body = {"lease_id": job["lease_id"], "delay_ms": delay_ms}
    return api.post(f"/jobs/{job['id']}/snooze", body, as_=token)


def test_release_gives_the_job_back_at_once_without_counting_the_attempt(
    api: Api, full: str
) -> None:
    push(api, full, max_attempts=1, timeout=60_000)
    for _ in range(3):
        [job] = pull(api, full)
        assert job["attempts"] == 1
        call = _release(api, full, job)
        assert call.status == 200
        assert (call.body["state"], call.body["attempts"]) == ("waiting", 0)
        assert call.body["lease_expires_at"] is None and call.body["deadline_at"] is None
        assert "lease_id" not in call.body
    [again] = pull(api, full)  # a max_attempts=1 job released 3 times is still pullable
    assert again["attempts"] == 1
    stored = Job.objects.get(id=again["id"])
    assert stored.errors == [] and stored.state == "active"


def test_snooze_moves_run_at_and_does_not_count_the_attempt(api: Api, full: str) -> None:
    push(api, full, max_attempts=1)
    [job] = pull(api, full)
    call = _snooze(api, full, job, 60_000)
    assert call.status == 200
    assert (call.body["state"], call.body["attempts"]) == ("delayed", 0)
    stored = Job.objects.get(id=job["id"])
    assert stored.lease_id is None and stored.lease_owner == ""
    assert 59 < (stored.run_at - timezone.now()).total_seconds() <= 60
    assert pull(api, full) == []  # not before its time


def test_snooze_0_is_ready_at_once(api: Api, full: str) -> None:
    push(api, full)
    [job] = pull(api, full)
    assert _snooze(api, full, job, 0).body["state"] == "waiting"
    assert [again["id"] for again in pull(api, full)] == [job["id"]]


@pytest.mark.parametrize("verb", ["release", "snooze"])
def test_a_stale_lease_is_409_and_changes_nothing(api: Api, full: str, verb: str) -> None:
    push(api, full)
    [job] = pull(api, full)
    body = {"lease_id": str(uuid.uuid4()), "delay_ms": 1000}
    if verb == "release":
        body.pop("delay_ms")
    call = api.post(f"/jobs/{job['id']}/{verb}", body, as_=full)
    assert call.status == 409 and call.body["code"] == "lease_conflict"
    stored = Job.objects.get(id=job["id"])
    assert (stored.state, stored.attempts, str(stored.lease_id)) == ("active", 1, job["lease_id"])


@pytest.mark.parametrize("verb", ["release", "snooze"])
def test_another_token_family_cannot_hand_back_the_job_even_with_its_lease(
    api: Api, full: str, verb: str
) -> None:
    other = make_token("other-worker", "jobs:*=pull")
    push(api, full)
    [job] = pull(api, full)
    body = {"lease_id": job["lease_id"], "delay_ms": 0}
    if verb == "release":
        body.pop("delay_ms")
    assert api.post(f"/jobs/{job['id']}/{verb}", body, as_=other).status == 409
    assert Job.objects.get(id=job["id"]).state == "active"


@pytest.mark.parametrize("verb", ["release", "snooze"])
def test_it_needs_the_pull_verb(api: Api, full: str, verb: str) -> None:
    acker = make_token("acker", "jobs:*=ack,fail,progress,getJob")
    push(api, full)
    [job] = pull(api, full)
    body = {"lease_id": job["lease_id"], "delay_ms": 0}
    if verb == "release":
        body.pop("delay_ms")
    assert api.post(f"/jobs/{job['id']}/{verb}", body, as_=acker).status == 403
    stranger = make_token("stranger", "other:*=*")
    assert api.post(f"/jobs/{job['id']}/{verb}", body, as_=stranger).status == 404
    assert Job.objects.get(id=job["id"]).state == "active"


def test_a_job_handed_back_after_its_lease_expired_is_409(api: Api, full: str) -> None:
    push(api, full)
    [job] = pull(api, full)
    Job.objects.filter(id=job["id"]).update(lease_expires_at=timezone.now())
    assert _release(api, full, job).status == 409


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"delay_ms": 10}, "/lease_id"),
        ({"lease_id": "nope", "delay_ms": 10}, "/lease_id"),
        ({"lease_id": str(uuid.uuid4())}, "/delay_ms"),
        ({"lease_id": str(uuid.uuid4()), "delay_ms": -1}, "/delay_ms"),
        ({"lease_id": str(uuid.uuid4()), "delay_ms": "10"}, "/delay_ms"),
        ({"lease_id": str(uuid.uuid4()), "delay_ms": 10, "x": 1}, "/x"),
    ],
)
def test_bad_snooze_bodies_are_400_naming_the_field(
    api: Api, full: str, body: dict[str, object], path: str
) -> None:
    push(api, full)
    [job] = pull(api, full)
    call = api.post(f"/jobs/{job['id']}/snooze", body, as_=full)
    assert call.status == 400
    assert path in [error["path"] for error in call.body["errors"]]
    assert Job.objects.get(id=job["id"]).state == "active"


def test_release_and_snooze_are_audited(api: Api, full: str) -> None:
    push(api, full)
    [job] = pull(api, full)
    _release(api, full, job)
    [job] = pull(api, full)
    _snooze(api, full, job, 5000)
    [release] = AuditEvent.objects.filter(action="release")
    [snooze] = AuditEvent.objects.filter(action="snooze")
    assert release.job_ids == snooze.job_ids == [job["id"]]
    assert release.queue == snooze.queue == "jobs:q"
    assert snooze.details["delay_ms"] == 5000


@pytest.mark.parametrize("verb", ["release", "snooze"])
def test_a_job_handed_back_after_its_ttl_is_not_expired(api: Api, full: str, verb: str) -> None:
    """ttl limits starting: a job that started and was handed back (a worker's shutdown)
    runs again, even when its ttl passed while it was held."""
    push(api, full, ttl=60_000)
    [job] = pull(api, full)
    Job.objects.filter(id=job["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    body = {"lease_id": job["lease_id"], **({"delay_ms": 0} if verb == "snooze" else {})}
    assert api.post(f"/jobs/{job['id']}/{verb}", body, as_=full).status == 200
    call_command("sweep_leases", stdout=StringIO())
    assert [again["id"] for again in pull(api, full)] == [job["id"]]
