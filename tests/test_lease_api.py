from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from queues.models import Job

from .support import Api, pull, push

pytestmark = pytest.mark.django_db


def _expire_lease(job_id: str) -> None:
    Job.objects.filter(id=job_id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))


def test_ack_completes_the_job_with_its_result(api: Api, full: str) -> None:
    push(api, full)
    [job] = pull(api, full)
    call = api.post(
        f"/jobs/{job['id']}/ack", {"lease_id": job["lease_id"], "result": {"ok": 1}}, as_=full
    )
    assert call.status == 200
    assert call.body["state"] == "completed" and call.body["result"] == {"ok": 1}
    assert call.body["finished_at"] is not None


@pytest.mark.parametrize("verb", ["ack", "fail", "progress"])
def test_a_foreign_lease_is_409_and_changes_nothing(api: Api, full: str, verb: str) -> None:
    push(api, full)
    [job] = pull(api, full)
    before = Job.objects.get(id=job["id"])
    body = {"lease_id": str(uuid.uuid4()), "progress": 50, "error": "x"}
    if verb == "ack":
        body = {"lease_id": body["lease_id"]}
    if verb == "fail":
        body.pop("progress")
    if verb == "progress":
        body.pop("error")
    call = api.post(f"/jobs/{job['id']}/{verb}", body, as_=full)
    assert call.status == 409 and call.body["code"] == "lease_conflict"
    after = Job.objects.get(id=job["id"])
    assert (after.state, after.attempts, after.progress, after.errors, after.lease_expires_at) == (
        before.state,
        before.attempts,
        before.progress,
        before.errors,
        before.lease_expires_at,
    )


def test_a_crashed_worker_s_job_comes_back_and_its_old_lease_is_refused(
    api: Api, full: str
) -> None:
    push(api, full)
    [first] = pull(api, full, lease=30)
    _expire_lease(first["id"])  # the worker died; its lease ran out
    [again] = pull(api, full)
    assert again["id"] == first["id"]
    assert again["attempts"] == 2
    assert again["lease_id"] != first["lease_id"]
    stale = api.post(f"/jobs/{first['id']}/ack", {"lease_id": first["lease_id"]}, as_=full)
    assert stale.status == 409
    detail = api.get(f"/jobs/{first['id']}", as_=full).body
    assert detail["state"] == "active"
    assert [entry["code"] for entry in detail["errors"]] == ["lease_expired"]
    assert detail["error_code"] == "lease_expired"
    assert [entry["error"] for entry in Job.objects.get(id=first["id"]).errors] == ["lease expired"]
    assert (
        api.post(f"/jobs/{again['id']}/ack", {"lease_id": again["lease_id"]}, as_=full).status
        == 200
    )


def test_an_expired_lease_cannot_be_acked_even_before_anyone_reclaims_it(
    api: Api, full: str
) -> None:
    push(api, full)
    [job] = pull(api, full)
    _expire_lease(job["id"])
    assert api.post(f"/jobs/{job['id']}/ack", {"lease_id": job["lease_id"]}, as_=full).status == 409


def test_sweep_leases_requeues_expired_leases_and_fails_the_last_attempt(
    api: Api, full: str
) -> None:
    retried = push(api, full, max_attempts=2)
    last = push(api, full, max_attempts=1)
    pull(api, full, count=2)
    _expire_lease(retried["id"])
    _expire_lease(last["id"])
    assert "Requeued 2" in call_command("sweep_leases")
    assert Job.objects.get(id=retried["id"]).state == "waiting"
    failed = Job.objects.get(id=last["id"])
    assert failed.state == "failed" and failed.error == "lease expired"
    assert failed.error_code == "lease_expired" and failed.errors[-1]["code"] == "lease_expired"
    assert failed.lease_id is None


def test_sweep_leases_marks_jobs_past_their_ttl_expired(api: Api, full: str) -> None:
    job = push(api, full, ttl=1000)
    Job.objects.filter(id=job["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert "expired 1" in call_command("sweep_leases")
    assert Job.objects.get(id=job["id"]).state == "expired"


def test_fail_retries_after_the_backoff(api: Api, full: str) -> None:
    push(api, full, backoff={"type": "fixed", "delay": 60_000, "jitter": 0})
    [job] = pull(api, full)
    call = api.post(
        f"/jobs/{job['id']}/fail", {"lease_id": job["lease_id"], "error": "boom"}, as_=full
    )
    assert call.status == 200
    assert call.body["state"] == "delayed"
    assert call.body["error"] == "[MASKED]"  # the token has no reveal
    assert call.body["errors"][0]["attempt"] == 1
    stored = Job.objects.get(id=job["id"])
    assert stored.error == "boom"
    assert 59 < (stored.run_at - timezone.now()).total_seconds() <= 60
    assert pull(api, full) == []  # not before the backoff


def test_fail_with_delay_0_gives_the_job_back_at_once(api: Api, full: str) -> None:
    """A worker shutting down hands its job to the next one without the job's backoff
    (the attempt still counts)."""
    push(api, full, backoff={"type": "fixed", "delay": 60_000, "jitter": 0})
    [job] = pull(api, full)
    body = {"lease_id": job["lease_id"], "error": "worker shutting down", "delay": 0}
    call = api.post(f"/jobs/{job['id']}/fail", body, as_=full)
    assert (call.status, call.body["state"]) == (200, "waiting")
    [again] = pull(api, full)
    assert again["id"] == job["id"] and again["attempts"] == 2


@pytest.mark.parametrize("delay", [-1, "soon", 1.5])
def test_a_bad_fail_delay_is_a_400_naming_it(api: Api, full: str, delay: object) -> None:
    push(api, full)
    [job] = pull(api, full)
    call = api.post(
        f"/jobs/{job['id']}/fail", {"lease_id": job["lease_id"], "delay": delay}, as_=full
    )
    assert call.status == 400 and [e["path"] for e in call.body["errors"]] == ["/delay"]
    assert Job.objects.get(id=job["id"]).state == "active"  # nothing changed


def test_fail_keeps_its_code_with_the_attempt_and_as_the_latest(api: Api, full: str) -> None:
    push(api, full, max_attempts=3, backoff={"type": "fixed", "delay": 0})
    for code in ("TimeoutError", "smtp.5-7_1"):
        [job] = pull(api, full)
        body = {"lease_id": job["lease_id"], "error": "e", "code": code}
        call = api.post(f"/jobs/{job['id']}/fail", body, as_=full)
        assert call.status == 200 and call.body["error_code"] == code
    [job] = pull(api, full)
    call = api.post(f"/jobs/{job['id']}/fail", {"lease_id": job["lease_id"]}, as_=full)
    assert call.body["state"] == "failed" and call.body["error_code"] == ""  # none given
    assert [e["code"] for e in call.body["errors"]] == ["TimeoutError", "smtp.5-7_1", ""]
    stored = Job.objects.get(id=job["id"])
    assert [e["code"] for e in stored.errors] == ["TimeoutError", "smtp.5-7_1", ""]


@pytest.mark.parametrize("code", ["", "has space", "x" * 65, "café", "a/b", 7, None])
def test_a_bad_fail_code_is_a_400_naming_it(api: Api, full: str, code: object) -> None:
    push(api, full)
    [job] = pull(api, full)
    body = {"lease_id": job["lease_id"], "error": "e", "code": code}
    call = api.post(f"/jobs/{job['id']}/fail", body, as_=full)
    assert call.status == 400 and [e["path"] for e in call.body["errors"]] == ["/code"]
    stored = Job.objects.get(id=job["id"])
    assert (stored.state, stored.errors, stored.error_code) == ("active", [], "")


def test_fail_on_the_last_attempt_goes_to_failed(api: Api, full: str) -> None:
    push(api, full, max_attempts=2, backoff={"type": "fixed", "delay": 0})
    for expected in ("waiting", "failed"):
        [job] = pull(api, full)
        call = api.post(
            f"/jobs/{job['id']}/fail", {"lease_id": job["lease_id"], "error": "e"}, as_=full
        )
        assert call.body["state"] == expected
    assert len(call.body["errors"]) == 2
    assert pull(api, full) == []


def test_fail_without_retry_goes_straight_to_failed(api: Api, full: str) -> None:
    push(api, full, max_attempts=5)
    [job] = pull(api, full)
    body = {"lease_id": job["lease_id"], "error": "bad input", "retry": False}
    assert api.post(f"/jobs/{job['id']}/fail", body, as_=full).body["state"] == "failed"


def test_a_huge_error_message_is_kept_truncated(api: Api, full: str) -> None:
    push(api, full)
    [job] = pull(api, full)
    body = {"lease_id": job["lease_id"], "error": "x" * 50_000}
    assert api.post(f"/jobs/{job['id']}/fail", body, as_=full).status == 200
    assert len(Job.objects.get(id=job["id"]).error) == 10_000


def test_progress_records_and_extends_the_lease(api: Api, full: str) -> None:
    push(api, full)
    [job] = pull(api, full, lease=60)
    Job.objects.filter(id=job["id"]).update(lease_expires_at=timezone.now() + timedelta(seconds=5))
    body = {"lease_id": job["lease_id"], "progress": 40, "message": "page 4 of 10"}
    call = api.post(f"/jobs/{job['id']}/progress", body, as_=full)
    assert call.status == 200
    assert (call.body["progress"], call.body["progress_message"]) == (40, "[MASKED]")
    stored = Job.objects.get(id=job["id"])
    assert stored.progress_message == "page 4 of 10"
    expires = stored.lease_expires_at
    assert expires is not None
    left = (expires - timezone.now()).total_seconds()
    assert 50 < left <= 60


@pytest.mark.parametrize("progress", [-1, 101, 50.5, "50"])
def test_progress_out_of_range_is_400(api: Api, full: str, progress: object) -> None:
    push(api, full)
    [job] = pull(api, full)
    call = api.post(
        f"/jobs/{job['id']}/progress", {"lease_id": job["lease_id"], "progress": progress}, as_=full
    )
    assert call.status == 400 and call.body["errors"][0]["path"] == "/progress"


def test_a_malformed_lease_id_is_400(api: Api, full: str) -> None:
    push(api, full)
    [job] = pull(api, full)
    call = api.post(f"/jobs/{job['id']}/ack", {"lease_id": "nope"}, as_=full)
    assert call.status == 400 and call.body["errors"][0]["path"] == "/lease_id"


def test_batch_ack_completes_all(api: Api, full: str) -> None:
    api.post("/queues/jobs:q/jobs/batch", {"jobs": [{"data": {}}] * 5}, as_=full)
    jobs = pull(api, full, count=5)
    acks = [
        {"id": j["id"], "lease_id": j["lease_id"], "result": {"i": i}} for i, j in enumerate(jobs)
    ]
    acks[0].pop("result")
    call = api.post("/jobs/ack", {"jobs": acks}, as_=full)
    assert call.status == 200 and call.body == {"acked": 5}
    assert set(Job.objects.values_list("state", flat=True)) == {"completed"}
    assert Job.objects.get(id=jobs[3]["id"]).result == {"i": 3}
    assert Job.objects.get(id=jobs[0]["id"]).result is None


def test_batch_ack_with_one_stale_lease_acks_nothing(api: Api, full: str) -> None:
    api.post("/queues/jobs:q/jobs/batch", {"jobs": [{"data": {}}] * 3}, as_=full)
    jobs = pull(api, full, count=3)
    acks = [{"id": j["id"], "lease_id": j["lease_id"]} for j in jobs]
    acks[1]["lease_id"] = str(uuid.uuid4())
    call = api.post("/jobs/ack", {"jobs": acks}, as_=full)
    assert call.status == 409
    assert [error["path"] for error in call.body["errors"]] == ["/jobs/1/lease_id"]
    assert set(Job.objects.values_list("state", flat=True)) == {"active"}


@pytest.mark.parametrize(
    "body",
    [{"jobs": []}, {"jobs": "x"}, {"jobs": [{"id": "x", "lease_id": "y"}]}, {"acks": []}, []],
)
def test_bad_batch_ack_bodies_are_400(api: Api, full: str, body: object) -> None:
    assert api.post("/jobs/ack", body, as_=full).status == 400


def test_batch_ack_refuses_a_repeated_job(api: Api, full: str) -> None:
    push(api, full)
    [job] = pull(api, full)
    item = {"id": job["id"], "lease_id": job["lease_id"]}
    call = api.post("/jobs/ack", {"jobs": [item, item]}, as_=full)
    assert call.status == 400 and call.body["errors"][0]["path"] == "/jobs/1/id"
