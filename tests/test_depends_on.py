"""``depends_on`` on push and batch push: the new job's state from the waiting rule, the
rows and marks it leaves, and the refusals (malformed ids, unknown or unreadable ones,
one answer for both)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from compliance.models import AuditEvent
from queues import selectors
from queues.models import DependencyKind, Job, JobDependency, JobState

from .support import Api, make_token, pull, push

pytestmark = pytest.mark.django_db


def _completed(api: Api, token: str, queue: str = "jobs:a") -> str:
    job = push(api, token, queue=queue)
    [leased] = pull(api, token, queue=queue)
    assert leased["id"] == job["id"]
    assert (
        api.post(f"/jobs/{job['id']}/ack", {"lease_id": leased["lease_id"]}, as_=token).status
        == 200
    )
    return str(job["id"])


def _failed(api: Api, token: str, queue: str = "jobs:a") -> str:
    job = push(api, token, queue=queue)
    [leased] = pull(api, token, queue=queue)
    call = api.post(
        f"/jobs/{job['id']}/fail", {"lease_id": leased["lease_id"], "retry": False}, as_=token
    )
    assert call.status == 200 and call.body["state"] == "failed", call.body
    return str(job["id"])


def _cancelled(api: Api, token: str, queue: str = "jobs:a") -> str:
    job = push(api, token, queue=queue)
    assert api.post(f"/jobs/{job['id']}/cancel", as_=token).status == 200
    return str(job["id"])


def _expired(api: Api, token: str, queue: str = "jobs:a") -> str:
    job = push(api, token, queue=queue)
    Job.objects.filter(id=job["id"]).update(state=JobState.EXPIRED)
    return str(job["id"])


def _push(api: Api, token: str, depends_on: list[str], queue: str = "jobs:b") -> Any:
    return api.post(f"/queues/{queue}/jobs", {"data": {}, "depends_on": depends_on}, as_=token)


def test_a_job_waits_in_waiting_children_for_an_unfinished_dependency(api: Api, full: str) -> None:
    target = push(api, full, queue="jobs:a")
    call = _push(api, full, [target["id"]])
    assert call.status == 201, call.body
    assert call.body["state"] == "waiting-children"
    job = Job.objects.get(id=call.body["id"])
    assert (job.state, job.finished_at, job.error_code) == (JobState.WAITING_CHILDREN, None, "")
    [row] = JobDependency.objects.filter(job=job)
    assert (str(row.depends_on_id), row.kind) == (target["id"], DependencyKind.DEPENDENCY)
    # The target is watched: whatever finishes it settles the new job.
    assert Job.objects.get(id=target["id"]).watched is True
    # Never handed out: only the target is pulled, from its own queue.
    assert pull(api, full, queue="jobs:b", count=10) == []
    assert [j["id"] for j in pull(api, full, queue="jobs:a", count=10)] == [target["id"]]
    read = api.get(f"/jobs/{job.id}", as_=full).body
    assert (read["state"], read["depends_on"], read["parent"]) == (
        "waiting-children",
        [target["id"]],
        None,
    )
    [event] = AuditEvent.objects.filter(request_id=call.headers["X-Request-ID"])
    assert event.details == {"created": True, "waiting_children": 1, "queue_created": True}


def test_a_job_whose_dependencies_all_completed_is_ready_at_once(api: Api, full: str) -> None:
    done = [_completed(api, full), _completed(api, full)]
    call = _push(api, full, done)
    assert (call.status, call.body["state"]) == (201, "waiting")
    assert [j["id"] for j in pull(api, full, queue="jobs:b")] == [call.body["id"]]
    assert api.get(f"/jobs/{call.body['id']}", as_=full).body["depends_on"] == done


@pytest.mark.parametrize("finish", [_failed, _cancelled, _expired])
def test_a_job_depending_on_a_job_that_failed_for_good_is_created_failed(
    api: Api, full: str, finish: Any
) -> None:
    """It never waits for ever: created failed with code dependency_failed, even when
    another dependency is still running."""
    bad = finish(api, full)
    running = push(api, full, queue="jobs:a")["id"]
    call = _push(api, full, [running, bad])
    assert (call.status, call.body["state"]) == (201, "failed")
    job = Job.objects.get(id=call.body["id"])
    assert (job.error_code, job.attempts) == ("dependency_failed", 0)
    assert job.finished_at is not None
    # Failed as settling fails a waiting job: the text names the job, never its data.
    state = Job.objects.get(id=bad).state
    assert job.error == f"a job it depends on failed: {bad} ({state})"
    assert [(e["code"], e["attempt"]) for e in job.errors] == [("dependency_failed", 0)]
    read = api.get(f"/jobs/{job.id}", as_=full).body
    assert (read["state"], read["error_code"]) == ("failed", "dependency_failed")
    assert JobDependency.objects.filter(job=job).count() == 2
    assert pull(api, full, queue="jobs:b") == []
    [event] = AuditEvent.objects.filter(request_id=call.headers["X-Request-ID"])
    assert event.details["dependency_failed"] == 1


def test_one_unfinished_and_one_completed_dependency_still_wait(api: Api, full: str) -> None:
    call = _push(api, full, [_completed(api, full), push(api, full, queue="jobs:a")["id"]])
    assert call.body["state"] == "waiting-children"


def test_unknown_and_unreadable_ids_get_the_same_422_and_nothing_changes(api: Api) -> None:
    owner = make_token("owner", "*=*")
    hidden = push(api, owner, queue="secret:a")["id"]
    mine = make_token("mine", "jobs:*=push,getJob", "secret:*=push")
    seen = push(api, mine, queue="jobs:a")["id"]
    before = (Job.objects.count(), JobDependency.objects.count())
    unknown = _push(api, mine, [seen, str(uuid.uuid4())])
    unreadable = _push(api, mine, [seen, hidden])
    for call in (unknown, unreadable):
        assert call.status == 422, call.body
        assert call.body["code"] == "unknown_dependency"
        assert call.body["errors"] == [
            {"path": "/depends_on/1", "message": "names no job this token may read"}
        ]
    assert unknown.body["detail"] == unreadable.body["detail"]
    assert (Job.objects.count(), JobDependency.objects.count()) == before
    # Neither target was marked: the refusal rolled the mark back.
    assert not Job.objects.filter(watched=True).exists()
    [event] = AuditEvent.objects.filter(request_id=unreadable.headers["X-Request-ID"])
    assert (event.status, event.details["paths"]) == (422, ["/depends_on/1"])


def test_a_target_deleted_between_lookup_and_mark_is_unknown_and_nothing_changes(
    api: Api, full: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As when a delete commits while the push waits on the target's row (PostgreSQL:
    test_depends_on_race): the mark finds no row, and the push is refused like any
    unknown id instead of writing a row that points at nothing."""
    gone, kept = push(api, full, queue="jobs:a")["id"], push(api, full, queue="jobs:a")["id"]
    looked_up = selectors.jobs_queue_names

    def then_deleted(**kwargs: Any) -> dict[uuid.UUID, str]:
        found = looked_up(**kwargs)
        Job.objects.filter(id=gone).delete()
        return found

    monkeypatch.setattr(selectors, "jobs_queue_names", then_deleted)
    before = (Job.objects.count(), JobDependency.objects.count())
    call = _push(api, full, [kept, gone])
    assert call.status == 422, call.body
    assert call.body["code"] == "unknown_dependency"
    assert call.body["errors"] == [
        {"path": "/depends_on/1", "message": "names no job this token may read"}
    ]
    # No job, no row, no mark (here the stand-in delete rolled back with the refusal).
    assert (Job.objects.count(), JobDependency.objects.count()) == before
    assert not Job.objects.get(id=kept).watched


@pytest.mark.parametrize(
    ("depends_on", "path", "message"),
    [
        ("x", "/depends_on", "must be a list of at most 100 job ids"),
        ([str(uuid.uuid4())] * 2, "/depends_on/1", "is repeated"),
        ([str(uuid.uuid4()), 7], "/depends_on/1", "must be a job id (a UUID)"),
        (
            [str(uuid.uuid4()) for _ in range(3)] + ["not-a-uuid"],
            "/depends_on/3",
            "must be a job id (a UUID)",
        ),
        ([str(uuid.uuid4()) for _ in range(101)], "/depends_on", None),
    ],
)
def test_malformed_depends_on_is_a_400_naming_the_item(
    api: Api, full: str, depends_on: Any, path: str, message: str | None
) -> None:
    call = _push(api, full, depends_on)
    assert call.status == 400, call.body
    [error] = call.body["errors"]
    assert error["path"] == path
    assert message is None or error["message"] == message
    assert not Job.objects.exists()


def test_batch_items_with_depends_on(api: Api, full: str) -> None:
    done, bad = _completed(api, full), _failed(api, full)
    running = push(api, full, queue="jobs:a")["id"]
    jobs = [
        {"data": {"n": 0}},
        {"data": {"n": 1}, "depends_on": [running]},
        {"data": {"n": 2}, "depends_on": [done]},
        {"data": {"n": 3}, "depends_on": [done, bad]},
        {"data": {"n": 4}, "depends_on": [running, done]},
    ]
    call = api.post("/queues/jobs:b/jobs/batch", {"jobs": jobs}, as_=full)
    assert call.status == 201, call.body
    states = [job["state"] for job in call.body["jobs"]]
    assert states == ["waiting", "waiting-children", "waiting", "failed", "waiting-children"]
    assert JobDependency.objects.count() == 6
    pulled = {j["id"] for j in pull(api, full, queue="jobs:b", count=10)}
    assert pulled == {call.body["jobs"][0]["id"], call.body["jobs"][2]["id"]}


def test_a_batch_names_each_bad_item_and_stores_nothing(api: Api, full: str) -> None:
    running = push(api, full, queue="jobs:a")["id"]
    jobs = [{"data": {}, "depends_on": [running]}] * 5 + [
        {"data": {}, "depends_on": [running, str(uuid.uuid4())]}
    ]
    before = Job.objects.count()
    call = api.post("/queues/jobs:b/jobs/batch", {"jobs": jobs}, as_=full)
    assert call.status == 422, call.body
    assert [e["path"] for e in call.body["errors"]] == ["/jobs/5/depends_on/1"]
    malformed = api.post(
        "/queues/jobs:b/jobs/batch",
        {"jobs": [{"data": {}}, {"data": {}, "depends_on": [1]}]},
        as_=full,
    )
    assert malformed.status == 400
    assert [e["path"] for e in malformed.body["errors"]] == ["/jobs/1/depends_on/0"]
    assert Job.objects.count() == before


def test_a_batch_item_cannot_depend_on_another_item_of_the_same_batch(api: Api, full: str) -> None:
    """Ids are the server's: a job can depend only on jobs that exist, so no cycle."""
    made = str(uuid.uuid4())
    call = api.post(
        "/queues/jobs:b/jobs/batch",
        {"jobs": [{"data": {}}, {"data": {}, "depends_on": [made]}]},
        as_=full,
    )
    assert call.status == 422


def test_a_keyed_push_returning_its_job_ignores_depends_on(api: Api, full: str) -> None:
    first = api.post("/queues/jobs:b/jobs", {"data": {}, "key": "k"}, as_=full)
    again = api.post(
        "/queues/jobs:b/jobs", {"data": {}, "key": "k", "depends_on": [str(uuid.uuid4())]}, as_=full
    )
    assert (first.status, again.status) == (201, 200)
    assert again.body["id"] == first.body["id"] and again.body["state"] == "waiting"
    assert not JobDependency.objects.exists()


def test_a_keyed_push_with_depends_on_waits_like_any_other(api: Api, full: str) -> None:
    target = push(api, full, queue="jobs:a")["id"]
    call = api.post(
        "/queues/jobs:b/jobs", {"data": {}, "key": "k", "depends_on": [target]}, as_=full
    )
    assert (call.status, call.body["state"]) == (201, "waiting-children")
    again = api.post("/queues/jobs:b/jobs", {"data": {}, "key": "k"}, as_=full)
    assert (again.status, again.body["id"]) == (200, call.body["id"])


def test_a_job_created_failed_does_not_hold_its_key(api: Api, full: str) -> None:
    bad = _failed(api, full)
    first = api.post("/queues/jobs:b/jobs", {"data": {}, "key": "k", "depends_on": [bad]}, as_=full)
    again = api.post("/queues/jobs:b/jobs", {"data": {}, "key": "k"}, as_=full)
    assert first.body["state"] == "failed"
    assert (again.status, again.body["state"]) == (201, "waiting")


def test_depends_on_reaches_any_queue_the_token_may_read(api: Api) -> None:
    """getJob on the target's queue is what counts, not push there."""
    owner = make_token("owner", "*=*")
    target = push(api, owner, queue="reports:x")["id"]
    reader = make_token("reader", "jobs:*=push", "reports:*=getJob")
    call = _push(api, reader, [target])
    assert (call.status, call.body["state"]) == (201, "waiting-children")


def test_a_depends_on_of_null_or_empty_is_no_dependency(api: Api, full: str) -> None:
    values: list[list[str] | None] = [None, []]
    for value in values:
        call = api.post("/queues/jobs:b/jobs", {"data": {}, "depends_on": value}, as_=full)
        assert (call.status, call.body["state"]) == (201, "waiting")
    assert not JobDependency.objects.exists()


# -- end to end, with the engine settling the dependent ---------------------------------------


def test_a_dependent_becomes_ready_when_its_dependencies_complete(api: Api, full: str) -> None:
    first = push(api, full, queue="jobs:a")["id"]
    second = push(api, full, queue="jobs:c")["id"]
    job = _push(api, full, [first, second]).body["id"]
    _completed_pulled(api, full, "jobs:a")
    assert Job.objects.get(id=job).state == JobState.WAITING_CHILDREN
    _completed_pulled(api, full, "jobs:c")
    assert [j["id"] for j in pull(api, full, queue="jobs:b")] == [job]


def test_a_dependent_fails_when_a_dependency_fails_later_never_waiting_for_ever(
    api: Api, full: str
) -> None:
    target = push(api, full, queue="jobs:a")["id"]
    job = _push(api, full, [target]).body["id"]
    [leased] = pull(api, full, queue="jobs:a")
    body = {"lease_id": leased["lease_id"], "retry": False}
    assert api.post(f"/jobs/{target}/fail", body, as_=full).status == 200
    read = api.get(f"/jobs/{job}", as_=full).body
    assert (read["state"], read["error_code"]) == ("failed", "dependency_failed")


def _completed_pulled(api: Api, token: str, queue: str) -> None:
    [leased] = pull(api, token, queue=queue)
    assert (
        api.post(f"/jobs/{leased['id']}/ack", {"lease_id": leased["lease_id"]}, as_=token).status
        == 200
    )


def test_many_targets_are_looked_up_and_marked_in_chunks(
    api: Api, full: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch may name 100,000 ids; they go in chunks (here of 2) within SQLite's limit
    on parameters, and every one is checked and marked."""
    from queues.services import pushdeps

    monkeypatch.setattr(pushdeps, "DEPENDS_CHUNK", 2)
    done = _completed(api, full)
    running = [push(api, full, queue="jobs:a")["id"] for _ in range(4)]
    jobs = [
        {"data": {}, "depends_on": [done]},
        {"data": {}, "depends_on": running[:3]},
        {"data": {}, "depends_on": [running[3], done]},
    ]
    call = api.post("/queues/jobs:b/jobs/batch", {"jobs": jobs}, as_=full)
    assert [job["state"] for job in call.body["jobs"]] == [
        "waiting",
        "waiting-children",
        "waiting-children",
    ]
    assert Job.objects.filter(watched=True).count() == 5
    unknown = api.post(
        "/queues/jobs:b/jobs/batch",
        {"jobs": [{"data": {}, "depends_on": [*running, str(uuid.uuid4())]}]},
        as_=full,
    )
    assert [e["path"] for e in unknown.body["errors"]] == ["/jobs/0/depends_on/4"]
