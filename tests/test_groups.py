"""Groups: at most the queue's group_concurrency active jobs per group, FIFO within a
group by priority then run_at, other groups served meanwhile. Every way a job leaves
``active`` frees its group's slot (the slot is a unique index over active rows only)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from compliance.models import AuditEvent
from queues import services
from queues.models import Job, JobState, Queue

from .support import SETUP, Api, clear_audit, pull, push

pytestmark = pytest.mark.django_db

Q = "grp"


def _push(api: Api, token: str, n: int, **fields: Any) -> str:
    return str(push(api, token, queue=Q, data={"n": n}, **fields)["id"])


def _names(jobs: list[dict[str, Any]]) -> list[int]:
    return [job["data"]["n"] for job in jobs]


def _set_gc(gc: int) -> None:
    Queue.objects.filter(name=Q).update(group_concurrency=gc)


def _active(group: str) -> list[Job]:
    return list(Job.objects.filter(group_key=group, state=JobState.ACTIVE).order_by("group_slot"))


def test_first_grouped_push_marks_the_queue(api: Api, full: str) -> None:
    _push(api, full, 1)
    assert not Queue.objects.get(name=Q).grouped
    _push(api, full, 2, group="a")
    assert Queue.objects.get(name=Q).grouped
    job = api.get(f"/jobs/{_push(api, full, 3, group='a')}", as_=full).body
    assert job["group"] == "a"


def test_a_pull_that_read_the_queue_ungrouped_leaves_grouped_jobs(api: Api, full: str) -> None:
    """A pull that read the queue just before its first grouped push committed claims
    with the ungrouped statement: it must not hand the grouped job out slotless."""
    _push(api, full, 1, group="a")
    _push(api, full, 2)
    Queue.objects.filter(name=Q).update(grouped=False)  # as that pull saw it
    assert _names(pull(api, full, queue=Q, count=10)) == [2]
    Queue.objects.filter(name=Q).update(grouped=True)
    assert _names(pull(api, full, queue=Q, count=10)) == [1]
    assert [job.group_slot for job in _active("a")] == [1]


def test_empty_group_is_refused(api: Api, full: str) -> None:
    call = api.post(f"/queues/{Q}/jobs", {"data": {}, "group": ""}, as_=full)
    assert call.status == 400
    assert [e["path"] for e in call.body["errors"]] == ["/group"]
    assert not Job.objects.exists()


def test_one_per_group_fifo_by_priority_then_run_at(api: Api, full: str) -> None:
    _push(api, full, 1, group="a")
    _push(api, full, 2, group="a", priority=5)
    _push(api, full, 3, group="b")
    _push(api, full, 4)  # ungrouped
    _push(api, full, 5, group="b")
    first = pull(api, full, queue=Q, count=10)
    # a's priority-5 job first, one of b, the ungrouped one.
    assert sorted(_names(first)) == [2, 3, 4]
    assert {job["group"] for job in first} == {"a", "b", None}
    assert pull(api, full, queue=Q, count=10) == []
    by_n = {job["data"]["n"]: job for job in first}
    for n in (2, 3):
        ack = api.post(f"/jobs/{by_n[n]['id']}/ack", {"lease_id": by_n[n]["lease_id"]}, as_=full)
        assert ack.status == 200
    assert sorted(_names(pull(api, full, queue=Q, count=10))) == [1, 5]


def test_group_concurrency_three(api: Api, full: str) -> None:
    for n in range(5):
        _push(api, full, n, group="a")
    _push(api, full, 9, group="b")
    _set_gc(3)
    jobs = pull(api, full, queue=Q, count=10)
    assert sorted(_names(jobs)) == [0, 1, 2, 9]
    assert [job.group_slot for job in _active("a")] == [1, 2, 3]
    assert pull(api, full, queue=Q, count=10) == []
    middle = next(job for job in jobs if job["data"]["n"] == 1)
    api.post(f"/jobs/{middle['id']}/ack", {"lease_id": middle["lease_id"]}, as_=full)
    [nxt] = pull(api, full, queue=Q, count=10)
    assert nxt["data"]["n"] == 3
    # The freed slot, 2, is the one taken.
    assert Job.objects.get(id=nxt["id"]).group_slot == 2


def test_ungrouped_jobs_are_unaffected(api: Api, full: str) -> None:
    for n in range(3):
        _push(api, full, n, group="a")
    for n in range(10, 14):
        _push(api, full, n)
    assert sorted(_names(pull(api, full, queue=Q, count=10))) == [0, 10, 11, 12, 13]
    assert Job.objects.filter(group_key=None, state=JobState.ACTIVE, group_slot=None).count() == 4


def test_delayed_high_priority_job_blocks_nothing(api: Api, full: str) -> None:
    _push(api, full, 1, group="a", priority=9, delay=3_600_000)
    _push(api, full, 2, group="a")
    _push(api, full, 3, group="b")
    _push(api, full, 4, priority=9, delay=3_600_000)
    assert sorted(_names(pull(api, full, queue=Q, count=10))) == [2, 3]


def _one_active(api: Api, full: str) -> tuple[dict[str, Any], str]:
    """A group of two: the first is leased; the second waits behind it."""
    _push(api, full, 1, group="a", max_attempts=2)
    second = _push(api, full, 2, group="a")
    [job] = pull(api, full, queue=Q, count=10)
    assert job["data"]["n"] == 1
    assert pull(api, full, queue=Q, count=10) == []
    return job, second


def _next_is(api: Api, full: str, job_id: str) -> None:
    jobs = pull(api, full, queue=Q, count=10)
    assert [job["id"] for job in jobs] == [job_id]
    assert [job.group_slot for job in _active("a")] == [1]


def test_ack_frees_the_slot(api: Api, full: str) -> None:
    job, second = _one_active(api, full)
    api.post(f"/jobs/{job['id']}/ack", {"lease_id": job["lease_id"]}, as_=full)
    _next_is(api, full, second)


def test_fail_with_retry_frees_the_slot(api: Api, full: str) -> None:
    job, second = _one_active(api, full)
    call = api.post(
        f"/jobs/{job['id']}/fail", {"lease_id": job["lease_id"], "error": "x"}, as_=full
    )
    assert call.status == 200
    assert Job.objects.get(id=job["id"]).state in (JobState.WAITING, "delayed")
    _next_is(api, full, second)


def test_final_fail_frees_the_slot(api: Api, full: str) -> None:
    job, second = _one_active(api, full)
    body = {"lease_id": job["lease_id"], "error": "x", "retry": False}
    assert api.post(f"/jobs/{job['id']}/fail", body, as_=full).status == 200
    assert Job.objects.get(id=job["id"]).state == JobState.FAILED
    _next_is(api, full, second)


def test_lease_expiry_frees_the_slot(api: Api, full: str) -> None:
    job, second = _one_active(api, full)
    Job.objects.filter(id=job["id"]).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    # The pull recovers the expired lease (a failed attempt, back to waiting with a new
    # run_at, so behind the second job) and hands the second job out in the freed slot.
    _next_is(api, full, second)
    assert Job.objects.get(id=job["id"]).state == JobState.WAITING


def test_cancel_frees_the_slot(api: Api, full: str) -> None:
    job, second = _one_active(api, full)
    assert api.post(f"/jobs/{job['id']}/cancel", {}, as_=full).status == 200
    _next_is(api, full, second)


def test_delete_frees_the_slot(api: Api, full: str) -> None:
    job, second = _one_active(api, full)
    services.jobs_delete(job_ids=[uuid.UUID(job["id"])], reason="test", actor=SETUP)
    _next_is(api, full, second)


def test_set_and_remove_group_concurrency(api: Api, full: str) -> None:
    clear_audit()
    call = api.request("PUT", f"/queues/{Q}/group-concurrency", {"max": 3}, as_=full)
    assert call.status == 200
    assert call.body["group_concurrency"] == 3
    assert Queue.objects.get(name=Q).group_concurrency == 3
    assert api.get(f"/queues/{Q}", as_=full).body["group_concurrency"] == 3
    call = api.request("DELETE", f"/queues/{Q}/group-concurrency", None, as_=full)
    assert (call.status, call.body["group_concurrency"]) == (200, 1)
    events = AuditEvent.objects.filter(queue=Q, action__contains="GroupConcurrency").order_by("id")
    assert [(e.action, e.details["from"], e.details["to"]) for e in events] == [
        ("setGroupConcurrency", 1, 3),
        ("removeGroupConcurrency", 3, 1),
    ]


@pytest.mark.parametrize(
    "body",
    [{"max": 0}, {}, {"max": "2"}, {"max": 1001}, {"max": 2, "per": "group"}],
)
def test_bad_group_concurrency_is_400_and_changes_nothing(
    api: Api, full: str, body: dict[str, Any]
) -> None:
    _push(api, full, 1, group="a")
    call = api.request("PUT", f"/queues/{Q}/group-concurrency", body, as_=full)
    assert call.status == 400
    assert call.body["errors"][0]["path"] in ("/max", "/per")
    assert Queue.objects.get(name=Q).group_concurrency == 1


def test_lowering_group_concurrency_holds_new_claims(api: Api, full: str) -> None:
    for n in range(4):
        _push(api, full, n, group="a")
    api.request("PUT", f"/queues/{Q}/group-concurrency", {"max": 3}, as_=full)
    jobs = pull(api, full, queue=Q, count=10)
    assert len(jobs) == 3
    api.request("PUT", f"/queues/{Q}/group-concurrency", {"max": 1}, as_=full)
    for job in jobs[:2]:
        api.post(f"/jobs/{job['id']}/ack", {"lease_id": job["lease_id"]}, as_=full)
    # One still active, the limit is one: nothing more until it is done.
    assert pull(api, full, queue=Q, count=10) == []
    api.post(f"/jobs/{jobs[2]['id']}/ack", {"lease_id": jobs[2]["lease_id"]}, as_=full)
    assert _names(pull(api, full, queue=Q, count=10)) == [3]


def test_timeout_frees_the_slot(api: Api, full: str) -> None:
    _push(api, full, 1, group="a", timeout=60_000, backoff={"type": "fixed", "delay": 60_000})
    second = _push(api, full, 2, group="a")
    [job] = pull(api, full, queue=Q, count=10)
    assert pull(api, full, queue=Q, count=10) == []
    past = timezone.now() - timedelta(seconds=1)
    Job.objects.filter(id=job["id"]).update(deadline_at=past, lease_expires_at=past)
    # The next pull finds the job past its deadline (a failed attempt, code timeout,
    # retried after its backoff) and hands out the next job of the group in its slot.
    _next_is(api, full, second)
    stored = Job.objects.get(id=job["id"])
    assert (stored.state, stored.error_code) == (JobState.WAITING, "timeout")


def test_snooze_frees_the_slot(api: Api, full: str) -> None:
    job, second = _one_active(api, full)
    body = {"lease_id": job["lease_id"], "delay_ms": 60_000}
    assert api.post(f"/jobs/{job['id']}/snooze", body, as_=full).status == 200
    _next_is(api, full, second)


def test_release_frees_the_slot(api: Api, full: str) -> None:
    job, _second = _one_active(api, full)
    assert (
        api.post(f"/jobs/{job['id']}/release", {"lease_id": job["lease_id"]}, as_=full).status
        == 200
    )
    # The slot is free, and the released job is back in its place: ahead of the job that
    # waited behind it, so a shutdown does not reorder a group.
    _next_is(api, full, job["id"])
