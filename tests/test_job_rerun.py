"""Retrying a completed job runs it again (POST /jobs/{id}/retry, the admin's Retry…):
alone, back to waiting with its attempts and error history kept, its result kept until
the new run replaces it; a key an unfinished job now holds is a 409 that changes
nothing."""

from __future__ import annotations

from typing import Any

import pytest

from compliance.models import AuditEvent
from queues.models import Job, JobState

from .support import Api, clear_audit, pull, push

pytestmark = pytest.mark.django_db


def _completed(api: Api, token: str, **fields: Any) -> dict[str, Any]:
    push(api, token, **fields)
    [job] = pull(api, token)
    ack = {"lease_id": job["lease_id"], "result": {"sent": 1}}
    assert api.post(f"/jobs/{job['id']}/ack", ack, as_=token).status == 200
    return job


def test_retry_runs_a_completed_job_again_keeping_attempts_history_and_result(
    api: Api, full: str
) -> None:
    push(api, full, max_attempts=3, backoff={"type": "fixed", "delay": 0})
    [job] = pull(api, full)
    failing = {"lease_id": job["lease_id"], "error": "smtp down", "retry": True}
    api.post(f"/jobs/{job['id']}/fail", failing, as_=full)
    [job] = pull(api, full)
    ack = {"lease_id": job["lease_id"], "result": {"sent": 1}}
    assert api.post(f"/jobs/{job['id']}/ack", ack, as_=full).status == 200
    clear_audit()

    call = api.post(f"/jobs/{job['id']}/retry", as_=full)

    assert call.status == 200, call.body
    body = call.body
    assert (body["state"], body["attempts"], body["finished_at"]) == ("waiting", 2, None)
    assert body["result"] == {"sent": 1}  # until the new run replaces it
    assert [entry["attempt"] for entry in body["errors"]] == [1]
    assert Job.objects.get(id=job["id"]).errors[0]["error"] == "smtp down"
    [event] = AuditEvent.objects.filter(action="retry")
    assert event.details["was"] == "completed" and event.job_ids == [job["id"]]
    [again] = pull(api, full)
    assert (again["id"], again["attempts"]) == (job["id"], 3)
    ack = {"lease_id": again["lease_id"], "result": {"sent": 2}}
    assert api.post(f"/jobs/{job['id']}/ack", ack, as_=full).status == 200
    assert Job.objects.get(id=job["id"]).result == {"sent": 2}


def test_a_job_completed_on_its_last_attempt_gets_one_more(api: Api, full: str) -> None:
    job = _completed(api, full, max_attempts=1)
    call = api.post(f"/jobs/{job['id']}/retry", as_=full)
    assert call.status == 200 and call.body["max_attempts"] == 2
    [again] = pull(api, full)
    failing = {"lease_id": again["lease_id"], "error": "e", "retry": True}
    assert api.post(f"/jobs/{job['id']}/fail", failing, as_=full).status == 200
    assert Job.objects.get(id=job["id"]).state == JobState.FAILED  # that one attempt only


def test_retrying_a_completed_job_whose_key_a_newer_job_holds_is_409_and_changes_nothing(
    api: Api, full: str
) -> None:
    job = _completed(api, full, key="invoice-7")
    newer = push(api, full, key="invoice-7")  # the key was free again once it completed
    assert newer["id"] != job["id"]
    before = Job.objects.get(id=job["id"])
    clear_audit()

    call = api.post(f"/jobs/{job['id']}/retry", as_=full)

    assert call.status == 409 and call.body["code"] == "state_conflict"
    assert "same key" in call.body["detail"]
    after = Job.objects.get(id=job["id"])
    assert (after.state, after.finished_at, after.max_attempts, after.attempts) == (
        JobState.COMPLETED,
        before.finished_at,
        before.max_attempts,
        before.attempts,
    )
    assert not AuditEvent.objects.filter(action="retry", outcome="allowed").exists()


def test_a_completed_flow_job_runs_again_alone(api: Api, full: str) -> None:
    body = {
        "job": {"data": {"report": "q3"}},
        "children": [{"queue": "jobs:c", "job": {"data": {"part": 1}}}],
    }
    flow = api.post("/queues/jobs:q/flows", body, as_=full)
    assert flow.status == 201, flow.body
    [child] = pull(api, full, queue="jobs:c")
    ack = {"lease_id": child["lease_id"], "result": {}}
    assert api.post(f"/jobs/{child['id']}/ack", ack, as_=full).status == 200
    [parent] = pull(api, full)
    ack = {"lease_id": parent["lease_id"], "result": {}}
    assert api.post(f"/jobs/{parent['id']}/ack", ack, as_=full).status == 200

    assert api.post(f"/jobs/{parent['id']}/retry", as_=full).body["state"] == "waiting"
    assert Job.objects.get(id=child["id"]).state == JobState.COMPLETED  # not run again
    assert api.post(f"/jobs/{child['id']}/retry", as_=full).status == 409  # parent ready
    [again] = pull(api, full)
    ack = {"lease_id": again["lease_id"], "result": {}}
    assert api.post(f"/jobs/{parent['id']}/ack", ack, as_=full).status == 200
    assert api.post(f"/jobs/{child['id']}/retry", as_=full).body["state"] == "waiting"
    [child_again] = pull(api, full, queue="jobs:c")
    ack = {"lease_id": child_again["lease_id"], "result": {}}
    assert api.post(f"/jobs/{child['id']}/ack", ack, as_=full).status == 200
    assert Job.objects.get(id=parent["id"]).state == JobState.COMPLETED  # left as it was
