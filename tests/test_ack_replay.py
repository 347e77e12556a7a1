"""Acks are safe to repeat: an ack, batch ack or piggy-backed ack that the lease which
completed the job sends again (its answer was lost) is answered as the first was, for
FLASHQ_ACK_REPLAY_SECONDS, and changes nothing but the audit trail. Past the window,
from another family or lease, or after a retry or an erasure, it is still a 409."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.db.models import Sum
from django.test import override_settings
from django.utils import timezone

from compliance.models import AuditEvent
from queues.models import EventKind, Job, JobEvent, JobMinute

from .support import Api, clear_audit, make_token, pull, push

pytestmark = pytest.mark.django_db


def _completions(job_id: str) -> int:
    """``completed`` events in the job event log (what streams and webhooks send)."""
    return JobEvent.objects.filter(job_id=job_id, kind=EventKind.COMPLETED).count()


def _rollup_completed() -> int:
    return int(JobMinute.objects.aggregate(n=Sum("completed"))["n"] or 0)


def _ack(api: Api, token: str, job: dict[str, Any], result: Any = None) -> Any:
    return api.post(
        f"/jobs/{job['id']}/ack", {"lease_id": job["lease_id"], "result": result}, as_=token
    )


def _acks(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"id": job["id"], "lease_id": job["lease_id"]} for job in jobs]


def _age(job_id: str, seconds: float) -> None:
    """Move the job's completion ``seconds`` into the past."""
    Job.objects.filter(id=job_id).update(finished_at=timezone.now() - timedelta(seconds=seconds))


def test_a_repeated_ack_answers_as_the_first_and_completes_once(api: Api, full: str) -> None:
    push(api, full)
    [job] = pull(api, full)
    first = _ack(api, full, job, {"sent": 1})
    assert first.status == 200
    stored = Job.objects.get(id=job["id"])
    clear_audit()
    again = _ack(api, full, job, {"sent": "a different result, ignored"})
    assert again.status == 200 and again.body == first.body
    assert again.body["state"] == "completed" and again.body["result"] == {"sent": 1}
    assert "lease_id" not in again.body  # a completed job holds no lease
    after = Job.objects.get(id=job["id"])
    assert (after.result, after.finished_at, after.attempts) == (
        {"sent": 1},
        stored.finished_at,
        stored.attempts,
    )
    assert _completions(job["id"]) == 1 and _rollup_completed() == 1
    [event] = AuditEvent.objects.all()
    assert (event.action, event.status, event.details) == ("ack", 200, {"replay": True})
    assert event.job_ids == [job["id"]]


def test_a_repeated_batch_ack_counts_its_replays_as_acked(api: Api, full: str) -> None:
    for _ in range(3):
        push(api, full)
    jobs = pull(api, full, count=3)
    assert api.post("/jobs/ack", {"jobs": _acks(jobs[:2])}, as_=full).body == {"acked": 2}
    clear_audit()
    # The lost answer's batch again, with the third job acked for the first time.
    items = [*_acks(jobs[:2]), {**_acks(jobs[2:])[0], "result": {"n": 3}}]
    items[0]["result"] = {"ignored": True}
    call = api.post("/jobs/ack", {"jobs": items}, as_=full)
    assert call.status == 200 and call.body == {"acked": 3}
    assert set(Job.objects.values_list("state", flat=True)) == {"completed"}
    assert Job.objects.get(id=jobs[0]["id"]).result is None
    assert Job.objects.get(id=jobs[2]["id"]).result == {"n": 3}
    assert [_completions(job["id"]) for job in jobs] == [1, 1, 1]
    assert _rollup_completed() == 3
    [event] = AuditEvent.objects.all()
    assert event.details == {"count": 3, "replayed": 2}


def test_a_repeated_piggy_backed_ack_is_no_conflict(api: Api, full: str) -> None:
    for n in range(3):
        push(api, full, data={"n": n})
    first = pull(api, full, count=2)
    second = pull(api, full, count=1, ack=_acks(first))
    clear_audit()
    # The answer of that pull was lost: the worker sends the same acks again.
    third = api.post("/queues/jobs:q/pull", {"count": 1, "ack": _acks(first)}, as_=full)
    assert third.status == 200 and third.body["jobs"] == []
    assert [_completions(job["id"]) for job in first] == [1, 1]
    assert Job.objects.get(id=second[0]["id"]).state == "active"  # not touched
    [event] = AuditEvent.objects.all()
    assert event.action == "pull" and event.details == {"acked": 2, "replayed": 2}


def test_a_replay_settles_nothing_again(api: Api, full: str) -> None:
    target = push(api, full)
    push(api, full, depends_on=[target["id"]])
    [job] = pull(api, full)
    assert job["id"] == target["id"]
    assert _ack(api, full, job).status == 200
    clear_audit()
    assert _ack(api, full, job).status == 200
    [event] = AuditEvent.objects.all()
    assert event.job_ids == [target["id"]]  # the dependent released once, by the first


@pytest.mark.parametrize("route", ["single", "batch", "pull"])
def test_another_lease_or_family_is_still_a_409(api: Api, full: str, route: str) -> None:
    other = make_token("other-worker", "jobs:*=*")
    push(api, full)
    [job] = pull(api, full)
    assert _ack(api, full, job).status == 200
    for token, lease in ((full, str(uuid.uuid4())), (other, job["lease_id"])):
        call = _send(api, token, {**job, "lease_id": lease}, route)
        assert call.status == 409 and call.body["code"] == "lease_conflict", (token, call.body)
    assert _completions(job["id"]) == 1


def _send(api: Api, token: str, job: dict[str, Any], route: str) -> Any:
    if route == "single":
        return _ack(api, token, job)
    if route == "batch":
        return api.post("/jobs/ack", {"jobs": _acks([job])}, as_=token)
    return api.post("/queues/jobs:q/pull", {"ack": _acks([job])}, as_=token)


@pytest.mark.parametrize("route", ["single", "batch", "pull"])
def test_past_the_window_a_repeated_ack_is_a_409(api: Api, full: str, route: str) -> None:
    push(api, full)
    [job] = pull(api, full)
    assert _ack(api, full, job).status == 200
    _age(job["id"], 901)
    call = _send(api, full, job, route)
    assert call.status == 409 and call.body["code"] == "lease_conflict"
    with override_settings(FLASHQ_ACK_REPLAY_SECONDS=3600):
        assert _send(api, full, job, route).status == 200
    with override_settings(FLASHQ_ACK_REPLAY_SECONDS=0):
        assert _send(api, full, job, route).status == 409


def test_one_stale_item_in_a_replayed_batch_acks_nothing(api: Api, full: str) -> None:
    for _ in range(2):
        push(api, full)
    jobs = pull(api, full, count=2)
    assert _ack(api, full, jobs[0]).status == 200
    # The first a replay, the second's lease made up.
    items = [_acks(jobs)[0], {"id": jobs[1]["id"], "lease_id": str(uuid.uuid4())}]
    call = api.post("/jobs/ack", {"jobs": items}, as_=full)
    assert call.status == 409
    assert [error["path"] for error in call.body["errors"]] == ["/jobs/1/lease_id"]
    assert Job.objects.get(id=jobs[1]["id"]).state == "active"


def test_a_retried_job_s_old_ack_is_a_409(api: Api, full: str) -> None:
    push(api, full)
    [job] = pull(api, full)
    assert _ack(api, full, job, {"run": 1}).status == 200
    assert api.post(f"/jobs/{job['id']}/retry", as_=full).status == 200
    stored = Job.objects.get(id=job["id"])
    assert (stored.lease_id, stored.lease_owner) == (None, "")
    assert _ack(api, full, job).status == 409
    [again] = pull(api, full)
    assert _ack(api, full, job).status == 409  # the old lease, on the new run
    assert _ack(api, full, again, {"run": 2}).status == 200
    assert _ack(api, full, job).status == 409  # the old lease, on the new completion
    assert Job.objects.get(id=job["id"]).result == {"run": 2}


def test_a_failed_job_s_lease_is_no_replay(api: Api, full: str) -> None:
    push(api, full, max_attempts=1)
    [job] = pull(api, full)
    call = api.post(
        f"/jobs/{job['id']}/fail", {"lease_id": job["lease_id"], "error": "x"}, as_=full
    )
    assert call.status == 200 and call.body["state"] == "failed"
    assert _ack(api, full, job).status == 409


@pytest.mark.parametrize(("mode", "status"), [("redact", 409), ("delete", 404)])
def test_an_erased_job_s_ack_is_no_replay(api: Api, full: str, mode: str, status: int) -> None:
    push(api, full, data={"userId": "u-4711"})
    [job] = pull(api, full)
    assert _ack(api, full, job, {"to": "u-4711"}).status == 200
    call_command("gdpr_erase", "u-4711", "--execute", "--mode", mode, "--reason", "DSR 1")
    call = _ack(api, full, job)
    assert call.status == status and "u-4711" not in str(call.body)


def test_a_completed_job_holds_no_lease_anywhere(api: Api, full: str) -> None:
    push(api, full)
    [job] = pull(api, full)
    assert _ack(api, full, job).status == 200
    assert "lease_id" not in api.get(f"/jobs/{job['id']}", as_=full).body
    stored = Job.objects.get(id=job["id"])
    assert (stored.lease_expires_at, stored.deadline_at) == (None, None)
    assert str(stored.lease_id) == job["lease_id"]  # kept, for a replay only
    for verb, more in (("fail", {"error": "x"}), ("progress", {"progress": 5}), ("release", {})):
        call = api.post(
            f"/jobs/{job['id']}/{verb}", {"lease_id": job["lease_id"], **more}, as_=full
        )
        assert call.status == 409, verb
