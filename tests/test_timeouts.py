"""A job's ``timeout``: a processing deadline from the claim that heartbeats never
extend; past it the attempt fails with code ``timeout``, found by the sweeper and by
the next pull."""

from __future__ import annotations

import time
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from compliance.audit.models import AuditEvent
from queues.models import Job

from .support import Api, pull, push

pytestmark = pytest.mark.django_db

FIXED_MINUTE = {"type": "fixed", "delay": 60_000, "jitter": 0}


def _past_deadline(job_id: str) -> None:
    """The deadline (and so the lease, which never outlives it) ran out a second ago."""
    past = timezone.now() - timedelta(seconds=1)
    Job.objects.filter(id=job_id).update(deadline_at=past, lease_expires_at=past)


def _heartbeat(api: Api, token: str, job: dict[str, object]) -> int:
    body = {"lease_id": job["lease_id"], "progress": 10}
    return api.post(f"/jobs/{job['id']}/progress", body, as_=token).status


def test_the_claim_sets_the_deadline_and_caps_the_lease_at_it(api: Api, full: str) -> None:
    push(api, full, timeout=5000)
    [job] = pull(api, full, lease=30)
    assert job["timeout"] == 5000 and job["deadline_at"] is not None
    stored = Job.objects.get(id=job["id"])
    assert stored.deadline_at is not None and stored.started_at is not None
    assert stored.lease_expires_at == stored.deadline_at
    detail = api.get(f"/jobs/{job['id']}", as_=full).body
    assert (detail["timeout"], detail["deadline_at"]) == (5000, job["deadline_at"])


def test_a_heartbeat_never_extends_the_lease_past_the_deadline(api: Api, full: str) -> None:
    push(api, full, timeout=20_000)
    [job] = pull(api, full, lease=30)
    assert _heartbeat(api, full, job) == 200
    stored = Job.objects.get(id=job["id"])
    assert stored.lease_expires_at == stored.deadline_at


def test_a_heartbeat_far_from_the_deadline_extends_the_lease_by_its_length(
    api: Api, full: str
) -> None:
    push(api, full, timeout=3_600_000)
    [job] = pull(api, full, lease=30)
    assert _heartbeat(api, full, job) == 200
    stored = Job.objects.get(id=job["id"])
    assert stored.deadline_at is not None and stored.lease_expires_at is not None
    assert stored.lease_expires_at < stored.deadline_at
    assert 29 < (stored.lease_expires_at - timezone.now()).total_seconds() <= 30


def test_a_timeout_fires_while_heartbeats_continue(api: Api, full: str) -> None:
    """Real time: a 1 s timeout, a 30 s lease, a heartbeat every 200 ms. The heartbeats
    succeed until the deadline, then get 409; the next pull records the timeout."""
    push(api, full, timeout=1000, backoff=FIXED_MINUTE)
    [job] = pull(api, full, lease=30)
    statuses = []
    for _ in range(50):
        statuses.append(_heartbeat(api, full, job))
        if statuses[-1] != 200:
            break
        time.sleep(0.2)
    assert statuses[0] == 200 and statuses[-1] == 409
    assert set(statuses[:-1]) == {200}
    assert pull(api, full) == []  # recovered, and not retried before its backoff
    stored = Job.objects.get(id=job["id"])
    assert (stored.state, stored.error_code, stored.attempts) == ("waiting", "timeout", 1)
    assert stored.error == "timed out after 1000 ms"
    assert stored.deadline_at is None and stored.lease_id is None
    assert 59 < (stored.run_at - timezone.now()).total_seconds() <= 60


def test_the_sweeper_fails_a_job_past_its_deadline_with_code_timeout(api: Api, full: str) -> None:
    push(api, full, timeout=1000, backoff=FIXED_MINUTE, max_attempts=3)
    [job] = pull(api, full, lease=30)
    _past_deadline(job["id"])
    assert _heartbeat(api, full, job) == 409
    assert "Requeued 1" in call_command("sweep_leases")
    detail = api.get(f"/jobs/{job['id']}", as_=full).body
    assert (detail["state"], detail["error_code"]) == ("delayed", "timeout")
    assert [entry["code"] for entry in detail["errors"]] == ["timeout"]
    assert detail["deadline_at"] is None and detail["lease_expires_at"] is None
    [event] = AuditEvent.objects.filter(action="timeout")
    assert event.job_ids == [job["id"]] and event.queue == "jobs:q"
    assert event.details["waiting"] == 1 and event.details["failed"] == 0
    assert not AuditEvent.objects.filter(action="lease.recover").exists()


def test_a_timeout_on_the_last_attempt_fails_the_job(api: Api, full: str) -> None:
    push(api, full, timeout=1000, max_attempts=1)
    [job] = pull(api, full, lease=30)
    _past_deadline(job["id"])
    assert pull(api, full) == []
    stored = Job.objects.get(id=job["id"])
    assert (stored.state, stored.error_code) == ("failed", "timeout")
    assert stored.finished_at is not None
    [event] = AuditEvent.objects.filter(action="timeout")
    assert event.details["failed"] == 1


def test_the_retry_after_a_timeout_is_pulled_with_a_fresh_deadline(api: Api, full: str) -> None:
    push(api, full, timeout=1000, backoff={"type": "fixed", "delay": 0, "jitter": 0})
    [first] = pull(api, full, lease=30)
    _past_deadline(first["id"])
    [again] = pull(api, full, lease=30)
    assert again["id"] == first["id"] and again["attempts"] == 2
    assert again["deadline_at"] is not None and again["deadline_at"] > first["deadline_at"]
    assert _heartbeat(api, full, again) == 200
    assert _heartbeat(api, full, first) == 409


def test_a_job_without_timeout_keeps_the_lease_expired_path(api: Api, full: str) -> None:
    push(api, full, backoff=FIXED_MINUTE)
    [job] = pull(api, full, lease=30)
    assert job["timeout"] is None and job["deadline_at"] is None
    Job.objects.filter(id=job["id"]).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    [again] = pull(api, full)  # no backoff: the lease itself was the wait
    assert again["id"] == job["id"]
    stored = Job.objects.get(id=job["id"])
    assert stored.error_code == "lease_expired"
    assert AuditEvent.objects.filter(action="lease.recover").count() == 1
    assert not AuditEvent.objects.filter(action="timeout").exists()


@pytest.mark.parametrize("timeout", [3_600_000, None])
def test_a_heartbeating_job_outlives_many_lease_lengths(
    api: Api, full: str, timeout: int | None
) -> None:
    """A 1 s lease, kept alive for 2.4 s by heartbeats 0.6 s apart: never recovered,
    with or without a (far) deadline. Without the heartbeats the second pull takes it."""
    push(api, full, timeout=timeout)  # None: no timeout
    [job] = pull(api, full, lease=1)
    for _ in range(4):
        time.sleep(0.6)
        assert _heartbeat(api, full, job) == 200
        assert pull(api, full) == []
    stored = Job.objects.get(id=job["id"])
    assert (stored.state, stored.attempts, stored.error_code) == ("active", 1, "")


def test_ack_and_fail_clear_the_deadline(api: Api, full: str) -> None:
    push(api, full, timeout=60_000)
    push(api, full, timeout=60_000)
    first, second = pull(api, full, count=2, lease=30)
    assert (
        api.post(f"/jobs/{first['id']}/ack", {"lease_id": first["lease_id"]}, as_=full).status
        == 200
    )
    body = {"lease_id": second["lease_id"], "error": "x"}
    assert api.post(f"/jobs/{second['id']}/fail", body, as_=full).status == 200
    assert list(Job.objects.values_list("deadline_at", flat=True)) == [None, None]


def test_a_mixed_batch_records_one_event_per_kind(api: Api, full: str) -> None:
    timed = push(api, full, timeout=1000, backoff=FIXED_MINUTE)
    plain = push(api, full, backoff=FIXED_MINUTE)
    pull(api, full, count=2, lease=30)
    _past_deadline(timed["id"])
    Job.objects.filter(id=plain["id"]).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert "Requeued 2" in call_command("sweep_leases")
    [timeout] = AuditEvent.objects.filter(action="timeout")
    [recover] = AuditEvent.objects.filter(action="lease.recover")
    assert (timeout.job_ids, recover.job_ids) == ([timed["id"]], [plain["id"]])


def test_an_erasure_that_cancels_an_active_job_clears_its_deadline(api: Api, full: str) -> None:
    push(api, full, data={"userId": "u-9"}, timeout=60_000)
    [job] = pull(api, full, lease=30)
    call_command("gdpr_erase", "u-9", "--execute", "--reason", "DSR ticket 1", stdout=StringIO())
    stored = Job.objects.get(id=job["id"])
    assert (stored.state, stored.deadline_at, stored.lease_id) == ("cancelled", None, None)
