"""What operators do to flows: cancel (a parent, or the whole flow), delete, retry and
retry-failed, retention and erasure. Each leaves every flow consistent: nothing waits
for ever, completed children are kept, and nothing an unfinished job waits for is
deleted."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from compliance.erasure import subject_erase
from compliance.models import AuditEvent
from queues import services
from queues.dependents import CHILD_FAILED
from queues.errors import StateConflict
from queues.models import Job, JobState, Queue

from .support import SETUP, Api, clear_audit, job_in, make_token, pull, push, waits_for

pytestmark = pytest.mark.django_db


def _state(job: Job) -> str:
    return str(Job.objects.get(id=job.id).state)


def _ack(api: Api, token: str, leased: dict[str, Any]) -> int:
    return api.post(f"/jobs/{leased['id']}/ack", {"lease_id": leased["lease_id"]}, as_=token).status


def _set(job: Job, state: str, **fields: Any) -> None:
    Job.objects.filter(id=job.id).update(state=state, **fields)


# -- cancel ----------------------------------------------------------------------------


def test_cancelling_a_parent_cancels_its_unfinished_children_every_level_down(
    api: Api, full: str
) -> None:
    done, active, grandchild = job_in("jobs:c"), job_in("jobs:c"), job_in("jobs:g")
    _set(done, JobState.COMPLETED)
    middle = waits_for(job_in("jobs:m"), grandchild)
    parent = waits_for(job_in("jobs:p"), done, active, middle)
    outsider = waits_for(job_in("jobs:x"), active, kind="dependency")
    [leased] = pull(api, full, queue="jobs:c")
    clear_audit()
    assert api.post(f"/jobs/{parent.id}/cancel", {}, as_=full).status == 200
    assert _state(parent) == _state(active) == JobState.CANCELLED
    assert _state(middle) == _state(grandchild) == JobState.CANCELLED
    assert _state(done) == JobState.COMPLETED
    # Whatever depended on a cancelled child fails; the worker's late ack is refused.
    assert Job.objects.get(id=outsider.id).error_code == "dependency_failed"
    assert _ack(api, full, leased) == 409
    [event] = AuditEvent.objects.filter(action="cancel")
    assert event.job_ids[0] == str(parent.id)
    assert set(event.job_ids[1:]) == {str(j.id) for j in (active, middle, grandchild, outsider)}
    assert event.details["settled"] == {"failed": 1, "cancelled": 3}


def test_flow_cancel_from_any_job_cancels_the_whole_flow() -> None:
    leaf, sibling, done = job_in("jobs:c"), job_in("jobs:c"), job_in("jobs:c")
    _set(done, JobState.COMPLETED)
    middle = waits_for(job_in("jobs:m"), leaf, sibling)
    root = waits_for(job_in("jobs:p"), middle, done)
    clear_audit()
    cancelled = services.flow_cancel(job_id=leaf.id, actor=SETUP, reason="ticket 9")
    assert set(cancelled) == {root.id, middle.id, leaf.id, sibling.id}
    assert cancelled[0] == root.id and _state(done) == JobState.COMPLETED
    [event] = AuditEvent.objects.filter(action="flow.cancel")
    assert event.job_ids == [str(job_id) for job_id in cancelled]
    assert event.details["root"] == str(root.id) and event.details["reason"] == "ticket 9"
    assert event.details["cancelled"] == 4
    with pytest.raises(StateConflict):
        services.flow_cancel(job_id=leaf.id, actor=SETUP)


def test_flow_cancel_of_a_lone_job_cancels_it() -> None:
    job = job_in("jobs:a")
    assert services.flow_cancel(job_id=job.id, actor=SETUP) == [job.id]
    assert _state(job) == JobState.CANCELLED


# -- delete ------------------------------------------------------------------------------


def test_deleting_an_unfinished_child_fails_its_parent_instead_of_leaving_it_waiting() -> None:
    child, other = job_in("jobs:c"), job_in("jobs:c")
    parent = waits_for(job_in("jobs:p"), child, other)
    clear_audit()
    assert services.jobs_delete(job_ids=[child.id], reason="", actor=SETUP) == 1
    assert not Job.objects.filter(id=child.id).exists()
    assert Job.objects.get(id=parent.id).error_code == CHILD_FAILED
    assert _state(other) == JobState.CANCELLED
    [event] = AuditEvent.objects.filter(action="delete")
    assert event.job_ids == [str(child.id), str(parent.id), str(other.id)]
    assert event.details["settled"] == {"failed": 1, "cancelled": 1}


def test_deleting_a_waiting_parent_cancels_its_children() -> None:
    child = job_in("jobs:c")
    parent = waits_for(job_in("jobs:p"), child)
    services.jobs_delete(job_ids=[parent.id], reason="", actor=SETUP)
    assert _state(child) == JobState.CANCELLED


# -- retry -----------------------------------------------------------------------------


def test_a_retried_parent_keeps_its_completed_children(api: Api, full: str) -> None:
    done, failed, cancelled, grandchild = (job_in(q) for q in ("jobs:c",) * 3 + ("jobs:g",))
    middle = waits_for(job_in("jobs:m"), grandchild)
    parent = waits_for(job_in("jobs:p"), done, failed, cancelled, middle)
    _set(done, JobState.COMPLETED, attempts=1)
    _set(failed, JobState.FAILED, attempts=3)
    _set(cancelled, JobState.CANCELLED)
    _set(grandchild, JobState.EXPIRED)
    _set(middle, JobState.FAILED, error_code=CHILD_FAILED)
    _set(parent, JobState.FAILED, error_code=CHILD_FAILED)
    clear_audit()
    assert api.post(f"/jobs/{parent.id}/retry", {}, as_=full).status == 200
    assert _state(parent) == _state(middle) == JobState.WAITING_CHILDREN
    assert _state(failed) == _state(cancelled) == _state(grandchild) == JobState.WAITING
    assert Job.objects.get(id=done.id).state == JobState.COMPLETED
    assert Job.objects.get(id=failed.id).attempts == 0
    [event] = AuditEvent.objects.filter(action="retry")
    assert event.job_ids[0] == str(parent.id) and event.details["children"] == 4
    # The retried flow runs to the end: the parent is ready once all are done.
    for queue, count in (("jobs:c", 2), ("jobs:g", 1), ("jobs:m", 1)):
        for leased in pull(api, full, queue=queue, count=count):
            assert _ack(api, full, leased) == 200
    assert _state(parent) == JobState.WAITING
    assert Job.objects.get(id=done.id).attempts == 1  # never run again


def test_a_parent_retried_after_its_own_failure_is_ready_at_once(api: Api, full: str) -> None:
    child = job_in("jobs:c")
    parent = waits_for(job_in("jobs:p"), child)
    _set(child, JobState.COMPLETED)
    _set(parent, JobState.FAILED)
    assert api.post(f"/jobs/{parent.id}/retry", {}, as_=full).status == 200
    assert _state(parent) == JobState.WAITING and _state(child) == JobState.COMPLETED


def test_a_job_whose_dependency_failed_is_not_retried(api: Api, full: str) -> None:
    dependency = job_in("jobs:d")
    dependent = waits_for(job_in("jobs:p"), dependency, kind="dependency")
    _set(dependency, JobState.FAILED)
    _set(dependent, JobState.FAILED, error_code="dependency_failed")
    call = api.post(f"/jobs/{dependent.id}/retry", {}, as_=full)
    assert call.status == 409 and str(dependency.id) in call.body["detail"]
    assert _state(dependent) == JobState.FAILED
    # Retry the dependency first: the dependent then waits for it.
    assert api.post(f"/jobs/{dependency.id}/retry", {}, as_=full).status == 200
    assert api.post(f"/jobs/{dependent.id}/retry", {}, as_=full).status == 200
    assert _state(dependent) == JobState.WAITING_CHILDREN
    [leased] = pull(api, full, queue="jobs:d")
    assert _ack(api, full, leased) == 200
    assert _state(dependent) == JobState.WAITING


def test_retry_failed_never_wakes_a_parent_while_it_has_unfinished_children(
    api: Api, full: str
) -> None:
    child, plain = job_in("jobs:c"), job_in("jobs:p")
    parent = waits_for(job_in("jobs:p"), child)
    blocked_on = job_in("jobs:d")
    blocked = waits_for(job_in("jobs:p"), blocked_on, kind="dependency")
    for job in (child, plain, parent, blocked, blocked_on):
        _set(job, JobState.FAILED, finished_at=timezone.now())
    clear_audit()
    call = api.post("/queues/jobs:p/retry-failed", {"limit": 10}, as_=full)
    assert call.status == 200 and call.body == {"retried": 2}
    assert _state(parent) == JobState.WAITING_CHILDREN and _state(child) == JobState.WAITING
    assert _state(plain) == JobState.WAITING and _state(blocked) == JobState.FAILED
    [event] = AuditEvent.objects.filter(action="retryFailed")
    assert event.details["dependency_failed"] == [str(blocked.id)]
    assert event.details["children"] == 1 and str(child.id) in event.job_ids


@pytest.mark.parametrize("policy", ["ignore", "continue"])
@pytest.mark.parametrize("parent_state", [JobState.WAITING, JobState.ACTIVE])
def test_a_child_is_not_retried_once_its_parent_is_ready_or_running(
    api: Api, full: str, policy: str, parent_state: str
) -> None:
    """Under ignore or continue a failed child lets its parent become ready: retried
    then, it would run beside (or after) a parent that no longer waits for it."""
    failed, done = job_in("jobs:c"), job_in("jobs:c")
    parent = waits_for(job_in("jobs:p"), failed, done, on_child_failure=policy)
    _set(failed, JobState.FAILED, finished_at=timezone.now())
    _set(done, JobState.COMPLETED, finished_at=timezone.now())
    _set(parent, parent_state)
    clear_audit()
    call = api.post(f"/jobs/{failed.id}/retry", {}, as_=full)
    assert call.status == 409 and str(parent.id) in call.body["detail"], call.body
    assert _state(failed) == JobState.FAILED and _state(parent) == parent_state
    redrive = api.post("/queues/jobs:c/retry-failed", {"limit": 10}, as_=full)
    assert redrive.status == 200 and redrive.body == {"retried": 0}
    assert _state(failed) == JobState.FAILED
    [event] = AuditEvent.objects.filter(action="retryFailed")
    assert event.details["parent_started"] == [str(failed.id)]
    assert "key_held" not in event.details
    # Once the parent has finished, its child may be retried on its own again.
    _set(parent, JobState.COMPLETED, finished_at=timezone.now())
    assert api.post(f"/jobs/{failed.id}/retry", {}, as_=full).status == 200


def test_a_child_of_a_parent_still_waiting_is_retried_and_waited_for(api: Api, full: str) -> None:
    failed, running = job_in("jobs:c"), job_in("jobs:c")
    parent = waits_for(job_in("jobs:p"), failed, running, on_child_failure="ignore")
    _set(failed, JobState.FAILED, finished_at=timezone.now())
    assert api.post(f"/jobs/{failed.id}/retry", {}, as_=full).status == 200
    first, second = pull(api, full, queue="jobs:c", count=2)
    assert _ack(api, full, first) == 200
    assert _state(parent) == JobState.WAITING_CHILDREN  # it waits for the retried one
    assert _ack(api, full, second) == 200
    assert _state(parent) == JobState.WAITING


# -- retention -------------------------------------------------------------------------


def test_retention_keeps_a_completed_child_until_its_parent_has_finished() -> None:
    long_ago = timezone.now() - timedelta(days=400)
    child, other = job_in("jobs:c"), job_in("jobs:c")
    parent = waits_for(job_in("jobs:p"), child, other)
    unwatched = job_in("jobs:c")
    for job in (child, unwatched):
        _set(job, JobState.COMPLETED, finished_at=long_ago)
    call_command("retention_cleanup", stdout=StringIO())
    assert Job.objects.filter(id=child.id).exists()
    assert not Job.objects.filter(id=unwatched.id).exists()
    _set(other, JobState.COMPLETED, finished_at=long_ago)
    _set(parent, JobState.COMPLETED, finished_at=timezone.now())
    call_command("retention_cleanup", stdout=StringIO())
    assert not Job.objects.filter(id__in=[child.id, other.id]).exists()
    assert Job.objects.filter(id=parent.id).exists()


def test_clean_deletes_a_completed_dependency_a_job_waits_for_and_holds_still_hold() -> None:
    """Only a flow's parent keeps its children: a completed dependency blocks nothing."""
    long_ago = timezone.now() - timedelta(days=400)
    dependency, held, running = job_in("jobs:d"), job_in("jobs:held"), job_in("jobs:r")
    waiting = waits_for(job_in("jobs:p"), dependency, held, running, kind="dependency")
    _set(dependency, JobState.COMPLETED, finished_at=long_ago)
    _set(held, JobState.COMPLETED, finished_at=long_ago)
    services.queue_set_legal_hold(name="jobs:held", hold=True, reason="case 1", actor=SETUP)
    cleaned = services.jobs_clean(
        queues=list(Queue.objects.all()),
        states=[JobState.COMPLETED],
        finished_before_=timezone.now(),
        limit=100,
        actor=SETUP,
    )
    assert (cleaned.deleted, cleaned.held) == ({"jobs:d": {"completed": 1}}, ["jobs:held"])
    assert Job.objects.filter(id=held.id).exists()  # the hold still holds
    assert _state(waiting) == JobState.WAITING_CHILDREN  # it waits for the rest


@pytest.mark.parametrize("via", ["retention_cleanup", "clean"])
def test_a_reader_cannot_keep_another_tenants_job_from_retention(api: Api, via: str) -> None:
    """A token that may only read tenant A's jobs names A's completed job in depends_on,
    beside a job of its own that never finishes: A's job still goes when due, and the
    dependent still runs once its own dependency completes (a deleted dependency is not
    a failed one)."""
    owner = make_token("tenant-a", "tenant-a:*=*")
    reader = make_token("tenant-b", "tenant-a:*=getJob", "tenant-b:*=push,pull,ack,getJob")
    theirs = push(api, owner, queue="tenant-a:q")["id"]
    [leased] = pull(api, owner, queue="tenant-a:q")
    assert _ack(api, owner, leased) == 200
    Job.objects.filter(id=theirs).update(finished_at=timezone.now() - timedelta(days=400))
    own = push(api, reader, queue="tenant-b:slow")["id"]
    body = {"data": {}, "depends_on": [theirs, own]}
    dependent = api.post("/queues/tenant-b:q/jobs", body, as_=reader).body["id"]
    if via == "clean":
        grace = {"state": "completed", "grace_ms": 86_400_000}
        cleaned = api.post("/queues/tenant-a:*/clean", grace, as_=owner)
        assert cleaned.status == 200, cleaned.body
    else:
        call_command("retention_cleanup", stdout=StringIO())
    assert not Job.objects.filter(id=theirs).exists()
    assert Job.objects.get(id=dependent).state == JobState.WAITING_CHILDREN
    [leased] = pull(api, reader, queue="tenant-b:slow")
    assert leased["id"] == own and _ack(api, reader, leased) == 200
    assert [job["id"] for job in pull(api, reader, queue="tenant-b:q")] == [dependent]


# -- erasure ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["redact", "delete"])
@pytest.mark.parametrize("policy", ["fail", "ignore"])
def test_erasing_an_unfinished_child_leaves_its_parent_consistent(
    api: Api, full: str, mode: str, policy: str
) -> None:
    about, other = job_in("jobs:c", subject="u-4711"), job_in("jobs:c")
    parent = waits_for(job_in("jobs:p"), about, other, on_child_failure=policy)
    clear_audit()
    subject_erase(subject="u-4711", mode=mode, reason="DSR-1", execute=True, actor=SETUP)
    [event] = AuditEvent.objects.filter(action="gdpr.erase")
    if policy == "fail":
        assert Job.objects.get(id=parent.id).error_code == CHILD_FAILED
        assert _state(other) == JobState.CANCELLED
        assert event.details["settled"] == {"failed": 1, "cancelled": 1}
    else:
        assert _state(parent) == JobState.WAITING_CHILDREN
        [leased] = pull(api, full, queue="jobs:c")
        assert _ack(api, full, leased) == 200
        assert _state(parent) == JobState.WAITING
        assert "settled" not in event.details
