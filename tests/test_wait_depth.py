"""How deep jobs may wait on each other (Job.depth, kernel.limits.MAX_WAIT_DEPTH): a
chain of depends_on, and a flow's root depended on, are refused past the limit with
nothing written; a chain at the limit settles whole when its head fails; a completed job
adds nothing, and a job made ready counts 0 from then on."""

from __future__ import annotations

from typing import Any

import pytest

from compliance.models import AuditEvent
from kernel.limits import MAX_FLOW_DEPTH, MAX_WAIT_DEPTH
from queues.dependents import DEPENDENCY_FAILED
from queues.models import Job, JobDependency, JobState

from .support import Api, pull, push

pytestmark = pytest.mark.django_db

TOO_DEEP = f"jobs would wait on each other {MAX_WAIT_DEPTH + 1} deep; at most {MAX_WAIT_DEPTH}"


def _depending(api: Api, token: str, on: list[str], queue: str = "chain:q") -> Any:
    return api.post(f"/queues/{queue}/jobs", {"data": {}, "depends_on": on}, as_=token)


def _chain(api: Api, token: str, head: str, links: int) -> list[str]:
    """``links`` jobs each depending on the one before, the first on ``head``: their
    ids, the last one deepest."""
    ids = [head]
    for _ in range(links):
        call = _depending(api, token, [ids[-1]])
        assert call.status == 201, call.body
        ids.append(call.body["id"])
    return ids[1:]


def _depth(job_id: str) -> int:
    return Job.objects.get(id=job_id).depth


def _snapshot() -> tuple[int, int, int]:
    return (
        Job.objects.count(),
        JobDependency.objects.count(),
        Job.objects.filter(watched=True).count(),
    )


def test_a_chain_of_32_is_accepted_and_the_33rd_refused_writing_nothing(
    api: Api, full: str
) -> None:
    head = push(api, full, queue="chain:head")["id"]
    chain = _chain(api, full, head, MAX_WAIT_DEPTH)
    assert [_depth(job_id) for job_id in chain] == list(range(1, MAX_WAIT_DEPTH + 1))
    assert _depth(head) == 0
    before = _snapshot()
    call = _depending(api, full, [chain[-1]])
    assert call.status == 422, call.body
    assert call.body["code"] == "wait_too_deep"
    assert call.body["errors"] == [{"path": "/depends_on", "message": TOO_DEEP}]
    # No job, no row, and the chain's last job was not marked watched.
    assert _snapshot() == before
    assert not Job.objects.get(id=chain[-1]).watched
    [event] = AuditEvent.objects.filter(request_id=call.headers["X-Request-ID"])
    assert (event.status, event.details["paths"]) == (422, ["/depends_on"])
    # Below the limit, the same chain may still be depended on.
    assert _depending(api, full, [chain[-2]]).status == 201


def test_a_batch_names_each_item_too_deep_and_writes_nothing(api: Api, full: str) -> None:
    head = push(api, full, queue="chain:head")["id"]
    chain = _chain(api, full, head, MAX_WAIT_DEPTH)
    before = _snapshot()
    jobs = [
        {"data": {}, "depends_on": [head]},
        {"data": {}, "depends_on": [head, chain[-1]]},
        {"data": {}},
        {"data": {}, "depends_on": [chain[-1]]},
    ]
    call = api.post("/queues/chain:q/jobs/batch", {"jobs": jobs}, as_=full)
    assert call.status == 422, call.body
    assert call.body["errors"] == [
        {"path": "/jobs/1/depends_on", "message": TOO_DEEP},
        {"path": "/jobs/3/depends_on", "message": TOO_DEEP},
    ]
    assert _snapshot() == before


@pytest.mark.parametrize("finish", ["fail", "cancel"])
def test_a_chain_at_the_limit_settles_whole_when_its_head_finishes_badly(
    api: Api, full: str, finish: str
) -> None:
    head = push(api, full, queue="chain:head")["id"]
    chain = _chain(api, full, head, MAX_WAIT_DEPTH)
    if finish == "fail":
        [leased] = pull(api, full, queue="chain:head")
        body = {"lease_id": leased["lease_id"], "error": "boom", "retry": False}
        call = api.post(f"/jobs/{head}/fail", body, as_=full)
    else:
        call = api.post(f"/jobs/{head}/cancel", as_=full)
    assert call.status == 200, call.body
    jobs = Job.objects.filter(id__in=chain)
    assert {(job.state, job.error_code) for job in jobs} == {(JobState.FAILED, DEPENDENCY_FAILED)}
    # One call, one transaction and one event naming every job of the chain it failed.
    [event] = AuditEvent.objects.filter(request_id=call.headers["X-Request-ID"])
    assert event.details["settled"] == {"failed": MAX_WAIT_DEPTH}
    assert set(event.job_ids) == {head, *chain}


def test_a_completed_job_adds_nothing_and_a_ready_one_counts_zero(api: Api, full: str) -> None:
    """A job waits for nothing through a completed one (nothing takes it back), so a
    chain whose jobs have run may grow on without limit; a job made ready waits for
    nothing, now or ever."""
    head = push(api, full, queue="chain:head")["id"]
    [first, second] = _chain(api, full, head, 2)
    assert (_depth(first), _depth(second)) == (1, 2)
    [leased] = pull(api, full, queue="chain:head")
    assert api.post(f"/jobs/{head}/ack", {"lease_id": leased["lease_id"]}, as_=full).status == 200
    assert Job.objects.get(id=first).state == JobState.WAITING
    assert _depth(first) == 0  # made ready: waits for nothing
    assert _depth(second) == 2  # still waiting: its depth is a bound, kept
    assert _depth(_depending(api, full, [first]).body["id"]) == 1
    [leased] = pull(api, full, queue="chain:q")
    assert api.post(f"/jobs/{first}/ack", {"lease_id": leased["lease_id"]}, as_=full).status == 200
    # Completed: a job depending on it alone waits for nothing (and is ready at once).
    call = _depending(api, full, [first])
    assert (call.body["state"], _depth(call.body["id"])) == ("waiting", 0)
    assert _depth(_depending(api, full, [first, second]).body["id"]) == 1


def _flow_chain(levels: int, queue: str = "flow:deep") -> dict[str, Any]:
    """A flow of ``levels`` levels, one job a level, the root's children in ``queue``."""
    node: dict[str, Any] = {"queue": queue, "job": {"data": {}}}
    for _ in range(levels - 2):
        node = {"queue": queue, "job": {"data": {}}, "children": [node]}
    return {"job": {"data": {}}, "children": [node]}


def test_a_flows_root_counts_its_levels_and_keeps_them_when_ready(api: Api, full: str) -> None:
    call = api.post("/queues/flow:root/flows", _flow_chain(MAX_FLOW_DEPTH), as_=full)
    assert call.status == 201, call.body
    root = call.body["id"]
    assert _depth(root) == MAX_FLOW_DEPTH - 1
    # Depended on, the root's levels count: the chain on it stops at the same limit.
    chain = _chain(api, full, root, MAX_WAIT_DEPTH - MAX_FLOW_DEPTH + 1)
    assert _depth(chain[-1]) == MAX_WAIT_DEPTH
    refused = _depending(api, full, [chain[-1]])
    assert (refused.status, refused.body["errors"]) == (
        422,
        [{"path": "/depends_on", "message": TOO_DEEP}],
    )
    # A parent made ready keeps its depth: retried, it may wait for its children again.
    small = api.post("/queues/flow:root/flows", _flow_chain(2, "flow:leaf"), as_=full).body
    [leased] = pull(api, full, queue="flow:leaf")
    assert leased["id"] == small["children"][0]["id"]
    ack = api.post(f"/jobs/{leased['id']}/ack", {"lease_id": leased["lease_id"]}, as_=full)
    assert ack.status == 200
    parent = Job.objects.get(id=small["id"])
    assert (parent.state, parent.depth) == (JobState.WAITING, 1)
