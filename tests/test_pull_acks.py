"""Pull with piggy-backed acks: a worker's previous batch is completed in the same
transaction as its next claim, all or nothing, and both are in the call's event."""

from __future__ import annotations

import uuid

import pytest

from compliance.models import AuditEvent
from queues.models import Job

from .support import Api, clear_audit, make_token, pull, push

pytestmark = pytest.mark.django_db


def _acks(jobs: list[dict[str, object]]) -> list[dict[str, object]]:
    return [{"id": job["id"], "lease_id": job["lease_id"]} for job in jobs]


def _states() -> dict[str, str]:
    return {str(job_id): state for job_id, state in Job.objects.values_list("id", "state")}


def test_a_pull_acks_the_previous_batch_and_leases_the_next(api: Api, full: str) -> None:
    for n in range(4):
        push(api, full, data={"n": n})
    first = pull(api, full, count=2)
    clear_audit()
    acks = _acks(first)
    acks[0]["result"] = {"sent": True}
    second = pull(api, full, count=2, ack=acks)
    assert len(second) == 2 and not {job["id"] for job in second} & {job["id"] for job in first}
    states = _states()
    assert [states[job["id"]] for job in first] == ["completed", "completed"]
    assert Job.objects.get(id=first[0]["id"]).result == {"sent": True}
    [event] = AuditEvent.objects.all()
    assert event.action == "pull" and event.details == {"acked": 2}
    assert event.job_ids == [job["id"] for job in first] + [job["id"] for job in second]


def test_one_stale_ack_and_nothing_is_acked_or_leased(api: Api, full: str) -> None:
    for n in range(3):
        push(api, full, data={"n": n})
    first = pull(api, full, count=2)
    before = _states()
    acks = _acks(first)
    acks[1]["lease_id"] = str(uuid.uuid4())
    call = api.post("/queues/jobs:q/pull", {"count": 5, "ack": acks}, as_=full)
    assert call.status == 409
    assert [error["path"] for error in call.body["errors"]] == ["/ack/1/lease_id"]
    assert _states() == before  # the first still active, the third still waiting


def test_acks_are_limited_to_the_pulled_queue(api: Api, full: str) -> None:
    push(api, full, queue="other")
    [leased] = pull(api, full, queue="other")
    push(api, full, queue="jobs:q")
    call = api.post("/queues/jobs:q/pull", {"ack": _acks([leased])}, as_=full)
    assert call.status == 409 and call.body["errors"][0]["path"] == "/ack/0/lease_id"
    assert Job.objects.get(id=leased["id"]).state == "active"
    assert Job.objects.filter(queue__name="jobs:q", state="waiting").count() == 1


def test_acking_needs_the_ack_verb(api: Api) -> None:
    setup = make_token("setup", "*=*")
    puller = make_token("puller", "jobs:*=pull")
    push(api, setup)
    [leased] = pull(api, puller)
    call = api.post("/queues/jobs:q/pull", {"ack": _acks([leased])}, as_=puller)
    assert call.status == 403
    assert Job.objects.get(id=leased["id"]).state == "active"


@pytest.mark.parametrize(
    ("ack", "path"),
    [
        ("nope", "/ack"),
        ([{"id": "x", "lease_id": str(uuid.uuid4())}], "/ack/0/id"),
        ([{"id": str(uuid.uuid4()), "lease_id": str(uuid.uuid4()), "extra": 1}], "/ack/0/extra"),
    ],
)
def test_bad_acks_are_a_400_naming_the_field(api: Api, full: str, ack: object, path: str) -> None:
    push(api, full)
    call = api.post("/queues/jobs:q/pull", {"ack": ack}, as_=full)
    assert call.status == 400
    assert path in [error["path"] for error in call.body["errors"]]
    assert Job.objects.get().state == "waiting"  # nothing leased


def test_an_empty_ack_list_is_a_plain_pull(api: Api, full: str) -> None:
    push(api, full)
    assert len(pull(api, full, ack=[])) == 1


def test_acks_commit_at_once_when_the_pull_goes_on_waiting(api: Api, full: str) -> None:
    push(api, full)
    first = pull(api, full)
    clear_audit()
    assert pull(api, full, ack=_acks(first), wait=0.3) == []
    assert _states()[first[0]["id"]] == "completed"
    events = list(AuditEvent.objects.order_by("id").values_list("job_ids", "details"))
    # The acks' own event, then the empty pull at the end of the wait.
    assert events == [([first[0]["id"]], {"acked": 1}), ([], {})]


def test_a_stale_ack_beside_fresh_ones_writes_no_result(api: Api, full: str) -> None:
    """The fresh acks are completed in one statement with their results; one stale ack
    beside them rolls all of it back."""
    for n in range(3):
        push(api, full, data={"n": n})
    jobs = pull(api, full, count=3)
    items = [{**ack, "result": {"i": i}} for i, ack in enumerate(_acks(jobs))]
    items[2]["lease_id"] = str(uuid.uuid4())
    call = api.post("/jobs/ack", {"jobs": items}, as_=full)
    assert call.status == 409
    assert [error["path"] for error in call.body["errors"]] == ["/jobs/2/lease_id"]
    stored = Job.objects.filter(id__in=[job["id"] for job in jobs])
    assert {(job.state, job.result, job.finished_at) for job in stored} == {("active", None, None)}
    items[2]["lease_id"] = jobs[2]["lease_id"]
    assert api.post("/jobs/ack", {"jobs": items}, as_=full).status == 200
    assert sorted(job.result["i"] for job in stored.all()) == [0, 1, 2]
    assert {job.state for job in stored.all()} == {"completed"}


@pytest.mark.parametrize("how", ["single", "batch", "pull"])
def test_a_rerun_acked_without_a_result_keeps_none_of_the_last_runs(
    api: Api, full: str, how: str
) -> None:
    """A completed job run again keeps its result until the new run replaces it: an ack
    of the new run without one leaves it without a result, however it is acked (a
    batch or a pull's ack once kept the last run's, as if this run had returned it)."""
    push(api, full)
    [job] = pull(api, full)
    ack = {"lease_id": job["lease_id"], "result": {"run": 1}}
    assert api.post(f"/jobs/{job['id']}/ack", ack, as_=full).status == 200
    assert api.post(f"/jobs/{job['id']}/retry", as_=full).status == 200
    [again] = pull(api, full)
    item = {"id": again["id"], "lease_id": again["lease_id"]}
    if how == "single":
        call = api.post(f"/jobs/{again['id']}/ack", {"lease_id": again["lease_id"]}, as_=full)
    elif how == "batch":
        call = api.post("/jobs/ack", {"jobs": [item]}, as_=full)
    else:
        call = api.post("/queues/jobs:q/pull", {"ack": [item]}, as_=full)
    assert call.status == 200
    stored = Job.objects.get(id=job["id"])
    assert (stored.state, stored.result) == ("completed", None)
