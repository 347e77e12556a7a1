"""Settling the jobs that wait for others (queues.dependents), through the real finishing
paths: ack, batch ack, pull's piggy-backed acks, fail, lease recovery, ttl. Flows are
built with the ORM (tests.support.job_in / waits_for); the flows API has its own tests."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from compliance.audit import Actor
from compliance.models import AuditEvent
from queues import pulling, services
from queues.dependents import CHILD_FAILED, DEPENDENCY_FAILED
from queues.models import Job, JobState

from .support import Api, Call, clear_audit, job_in, pull, waits_for

pytestmark = pytest.mark.django_db

SWEEPER = Actor.system("test-sweeper")


def _state(job: Job) -> str:
    return str(Job.objects.get(id=job.id).state)


def _ack(api: Api, token: str, leased: dict[str, Any]) -> Call:
    return api.post(f"/jobs/{leased['id']}/ack", {"lease_id": leased["lease_id"]}, as_=token)


def _fail(api: Api, token: str, leased: dict[str, Any], **fields: Any) -> Call:
    body = {"lease_id": leased["lease_id"], "error": "boom", **fields}
    return api.post(f"/jobs/{leased['id']}/fail", body, as_=token)


def _events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def test_the_parent_becomes_ready_when_its_last_child_completes(api: Api, full: str) -> None:
    a, b = job_in("jobs:c"), job_in("jobs:c")
    parent = waits_for(job_in("jobs:p"), a, b)
    assert pull(api, full, queue="jobs:p") == []  # waiting-children is never handed out
    first, second = pull(api, full, queue="jobs:c", count=2)
    clear_audit()
    assert _ack(api, full, first).status == 200
    assert _state(parent) == JobState.WAITING_CHILDREN
    assert pull(api, full, queue="jobs:p") == []
    assert _ack(api, full, second).status == 200
    assert _state(parent) == JobState.WAITING
    # One event per ack; the last one names the parent it made ready.
    acks = _events("ack")
    assert [event.job_ids for event in acks] == [[first["id"]], [second["id"], str(parent.id)]]
    assert acks[0].details == {} and acks[1].details == {"settled": {"ready": 1}}
    assert [job["id"] for job in pull(api, full, queue="jobs:p")] == [str(parent.id)]


def test_the_child_and_its_parent_commit_together(
    api: Api, full: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure after settling (here the event's write) leaves neither changed."""
    child = job_in("jobs:c")
    parent = waits_for(job_in("jobs:p"), child)
    [leased] = pull(api, full, queue="jobs:c")

    def broken(**_: Any) -> None:
        raise RuntimeError("the audit store went away")

    monkeypatch.setattr(services.reports, "audit_record", broken)
    with pytest.raises(RuntimeError):
        services.job_ack(
            job_id=child.id,
            lease_id=leased["lease_id"],
            owner=Job.objects.get(id=child.id).lease_owner,
            actor=SWEEPER,
        )
    assert _state(child) == JobState.ACTIVE and _state(parent) == JobState.WAITING_CHILDREN


def test_batch_ack_and_piggy_backed_acks_settle_too(api: Api, full: str) -> None:
    a, b, c = job_in("jobs:c"), job_in("jobs:c"), job_in("jobs:c")
    parent = waits_for(job_in("jobs:c"), a, b)
    other = waits_for(job_in("jobs:p"), c)
    leased = pull(api, full, queue="jobs:c", count=3)
    by_id = {job["id"]: job for job in leased}
    acks = [{"id": str(job.id), "lease_id": by_id[str(job.id)]["lease_id"]} for job in (a, b)]
    clear_audit()
    assert api.post("/jobs/ack", {"jobs": acks}, as_=full).status == 200
    assert _state(parent) == JobState.WAITING
    [event] = _events("ack")
    assert event.job_ids == [str(a.id), str(b.id), str(parent.id)]
    assert event.details == {"count": 2, "settled": {"ready": 1}}
    # Pull's acks: the parent made ready in jobs:c is handed out by the same pull.
    ack = [{"id": str(c.id), "lease_id": by_id[str(c.id)]["lease_id"]}]
    [job] = pull(api, full, queue="jobs:c", ack=ack)
    assert job["id"] == str(parent.id) and _state(other) == JobState.WAITING
    [event] = _events("pull")
    assert event.job_ids == [str(c.id), str(parent.id), str(other.id)]
    assert event.details == {"acked": 1, "settled": {"ready": 1}}


@pytest.mark.parametrize("policy", ["ignore", "continue"])
def test_under_ignore_and_continue_a_failed_child_counts_as_finished(
    api: Api, full: str, policy: str
) -> None:
    a, b = job_in("jobs:c"), job_in("jobs:c", max_attempts=1)
    parent = waits_for(job_in("jobs:p"), a, b, on_child_failure=policy)
    first, second = pull(api, full, queue="jobs:c", count=2)
    failing = first if first["id"] == str(b.id) else second
    other = second if failing is first else first
    assert _fail(api, full, failing).status == 200
    assert _state(b) == JobState.FAILED and _state(parent) == JobState.WAITING_CHILDREN
    assert _ack(api, full, other).status == 200
    assert _state(parent) == JobState.WAITING


def test_under_fail_the_parent_fails_and_its_other_children_are_cancelled(
    api: Api, full: str
) -> None:
    a, b, c = job_in("jobs:c"), job_in("jobs:c"), job_in("jobs:c")
    parent = waits_for(job_in("jobs:p"), a, b, c)
    leased = {job["id"]: job for job in pull(api, full, queue="jobs:c", count=2)}
    clear_audit()
    assert _fail(api, full, leased[str(a.id)], retry=False).status == 200
    stored = Job.objects.get(id=parent.id)
    assert stored.state == JobState.FAILED and stored.error_code == CHILD_FAILED
    assert stored.error == f"a child job failed: {a.id} (failed)"
    assert stored.errors[-1]["code"] == CHILD_FAILED and stored.finished_at is not None
    assert _state(b) == _state(c) == JobState.CANCELLED
    # The worker still holding b finds its lease void.
    assert _ack(api, full, leased[str(b.id)]).status == 409
    [event] = _events("fail")
    assert event.job_ids[:2] == [str(a.id), str(parent.id)]
    assert sorted(event.job_ids[2:]) == sorted([str(b.id), str(c.id)])
    assert event.details["settled"] == {"failed": 1, "cancelled": 2}


def test_a_cancelled_child_counts_as_failed(api: Api, full: str) -> None:
    a, b = job_in("jobs:c"), job_in("jobs:c")
    parent = waits_for(job_in("jobs:p"), a, b)
    assert api.post(f"/jobs/{a.id}/cancel", {}, as_=full).status == 200
    assert _state(parent) == JobState.FAILED and _state(b) == JobState.CANCELLED
    assert Job.objects.get(id=parent.id).error == f"a child job failed: {a.id} (cancelled)"


def test_an_expired_child_counts_as_failed() -> None:
    gone = timezone.now() - timedelta(seconds=1)
    a, b = job_in("jobs:c", expires_at=gone), job_in("jobs:c")
    parent = waits_for(job_in("jobs:p"), a, b)
    assert pulling.jobs_expire_ttl(actor=SWEEPER) == 1
    assert _state(a) == JobState.EXPIRED and _state(parent) == JobState.FAILED
    assert _state(b) == JobState.CANCELLED
    [event] = _events("ttl.expire")
    assert event.details == {"count": 1, "settled": {"failed": 1, "cancelled": 1}}


def test_a_failed_dependency_fails_its_dependent_which_never_waits_for_ever(
    api: Api, full: str
) -> None:
    """Its leases run out (no worker ever acks or fails it): lease recovery retries it,
    then fails it on its last attempt, and the dependent fails with dependency_failed."""
    dependency = job_in("jobs:d", max_attempts=2)
    dependent = waits_for(job_in("jobs:p"), dependency, kind="dependency")
    for state in (JobState.WAITING, JobState.FAILED):
        assert len(pull(api, full, queue="jobs:d", lease=60)) == 1
        Job.objects.filter(id=dependency.id).update(lease_expires_at=timezone.now())
        clear_audit()
        assert pulling.leases_requeue_expired(actor=SWEEPER) == 1
        assert _state(dependency) == state
        if state == JobState.WAITING:
            assert _state(dependent) == JobState.WAITING_CHILDREN
    stored = Job.objects.get(id=dependent.id)
    assert stored.state == JobState.FAILED and stored.error_code == DEPENDENCY_FAILED
    assert stored.error == f"a job it depends on failed: {dependency.id} (failed)"
    [event] = _events("lease.recover")
    assert event.job_ids == [str(dependency.id), str(dependent.id)]
    assert event.details["settled"] == {"failed": 1}


def test_a_child_past_its_deadline_on_its_last_attempt_fails_its_parent(
    api: Api, full: str
) -> None:
    child = job_in("jobs:c", max_attempts=1, timeout_ms=1000)
    parent = waits_for(job_in("jobs:p"), child)
    pull(api, full, queue="jobs:c")
    past = timezone.now() - timedelta(seconds=1)
    Job.objects.filter(id=child.id).update(lease_expires_at=past, deadline_at=past)
    clear_audit()
    assert pulling.leases_requeue_expired(actor=SWEEPER) == 1
    assert Job.objects.get(id=child.id).error_code == "timeout"
    assert Job.objects.get(id=parent.id).error_code == CHILD_FAILED
    [event] = _events("timeout")
    assert event.job_ids == [str(child.id), str(parent.id)]


def test_a_dependency_that_fails_fails_its_dependent_whatever_the_policy(
    api: Api, full: str
) -> None:
    dependency, child = job_in("jobs:d"), job_in("jobs:c")
    job = waits_for(job_in("jobs:p"), child, on_child_failure="ignore")
    waits_for(job, dependency, kind="dependency", on_child_failure="ignore")
    [leased] = pull(api, full, queue="jobs:d")
    assert _fail(api, full, leased, retry=False).status == 200
    assert Job.objects.get(id=job.id).error_code == DEPENDENCY_FAILED
    # A dependency is not a child: its dependent failing cancels no child.
    assert _state(child) == JobState.WAITING


def test_a_dependent_waits_for_every_dependency_to_complete(api: Api, full: str) -> None:
    one, two = job_in("jobs:d"), job_in("jobs:d")
    dependent = waits_for(job_in("jobs:p"), one, two, kind="dependency")
    for leased in pull(api, full, queue="jobs:d", count=2):
        assert _state(dependent) == JobState.WAITING_CHILDREN
        assert _ack(api, full, leased).status == 200
    assert _state(dependent) == JobState.WAITING


def test_three_levels_cascade_up_on_success(api: Api, full: str) -> None:
    leaf = job_in("jobs:c")
    middle = waits_for(job_in("jobs:m"), leaf)
    root = waits_for(job_in("jobs:p"), middle)
    [leased] = pull(api, full, queue="jobs:c")
    assert _ack(api, full, leased).status == 200
    assert _state(middle) == JobState.WAITING and _state(root) == JobState.WAITING_CHILDREN
    [leased] = pull(api, full, queue="jobs:m")
    assert _ack(api, full, leased).status == 200
    assert _state(root) == JobState.WAITING


def test_three_levels_cascade_up_on_failure(api: Api, full: str) -> None:
    leaf, sibling, uncle = job_in("jobs:c"), job_in("jobs:c"), job_in("jobs:u")
    middle = waits_for(job_in("jobs:m"), leaf, sibling)
    root = waits_for(job_in("jobs:p"), middle, uncle)
    dependent = waits_for(job_in("jobs:x"), root, kind="dependency")
    leased = {job["id"]: job for job in pull(api, full, queue="jobs:c", count=2)}
    clear_audit()
    assert _fail(api, full, leased[str(leaf.id)], retry=False).status == 200
    assert Job.objects.get(id=middle.id).error_code == CHILD_FAILED
    assert Job.objects.get(id=root.id).error_code == CHILD_FAILED
    assert Job.objects.get(id=dependent.id).error_code == DEPENDENCY_FAILED
    assert _state(sibling) == _state(uncle) == JobState.CANCELLED
    [event] = _events("fail")
    assert event.details["settled"] == {"failed": 3, "cancelled": 2}


def test_a_waiting_parent_whose_ttl_ran_out_expires_instead_of_running(api: Api, full: str) -> None:
    child = job_in("jobs:c")
    gone = timezone.now() - timedelta(seconds=1)
    parent = waits_for(job_in("jobs:p"), child, expires_at=gone)
    dependent = waits_for(job_in("jobs:x"), parent, kind="dependency")
    # The sweeper leaves a waiting-children job alone: it cannot start yet anyway.
    assert pulling.jobs_expire_ttl(actor=SWEEPER) == 0
    [leased] = pull(api, full, queue="jobs:c")
    assert _ack(api, full, leased).status == 200
    assert _state(parent) == JobState.EXPIRED
    assert Job.objects.get(id=dependent.id).error_code == DEPENDENCY_FAILED


def test_a_child_retried_by_its_own_failure_keeps_the_parent_waiting(api: Api, full: str) -> None:
    child = job_in("jobs:c", max_attempts=2)
    parent = waits_for(job_in("jobs:p"), child)
    [leased] = pull(api, full, queue="jobs:c")
    assert _fail(api, full, leased, delay=0).status == 200  # attempts left: retried
    assert _state(child) == JobState.WAITING and _state(parent) == JobState.WAITING_CHILDREN
    [leased] = pull(api, full, queue="jobs:c")
    assert _ack(api, full, leased).status == 200
    assert _state(parent) == JobState.WAITING


@pytest.mark.parametrize("path", ["update", "promote"])
def test_a_waiting_children_job_cannot_be_updated_or_promoted(
    api: Api, full: str, path: str
) -> None:
    parent = waits_for(job_in("jobs:p"), job_in("jobs:c"))
    call = (
        api.patch(f"/jobs/{parent.id}", {"priority": 3}, as_=full)
        if path == "update"
        else api.post(f"/jobs/{parent.id}/promote", {}, as_=full)
    )
    assert call.status == 409 and _state(parent) == JobState.WAITING_CHILDREN
