from __future__ import annotations

import uuid

import pytest

from queues.models import Job, JobState

from .support import Api, make_token, pull, push

pytestmark = pytest.mark.django_db

DETAIL_FIELDS = {
    "id", "queue", "state", "priority", "data", "result", "error", "attempts",
    "max_attempts", "progress", "created_at", "started_at", "finished_at", "errors",
}  # fmt: skip


def test_get_job_has_the_documented_fields(api: Api, full: str) -> None:
    job = push(api, full, data={"x": 1})
    call = api.get(f"/jobs/{job['id']}", as_=full)
    assert call.status == 200
    assert set(call.body) >= DETAIL_FIELDS
    assert call.body["data"] == {"x": 1} and call.body["state"] == "waiting"


def test_get_job_shows_the_lease_id_only_to_its_holder(api: Api, full: str) -> None:
    push(api, full)
    [leased] = pull(api, full)
    reader = make_token("reader", "*=getJob")
    assert api.get(f"/jobs/{leased['id']}", as_=full).body["lease_id"] == leased["lease_id"]
    other = api.get(f"/jobs/{leased['id']}", as_=reader).body
    assert "lease_id" not in other and other["state"] == "active"


@pytest.mark.parametrize("job_id", [str(uuid.uuid4()), "not-a-uuid"])
def test_an_unknown_job_is_404(api: Api, full: str, job_id: str) -> None:
    for call in (
        api.get(f"/jobs/{job_id}", as_=full),
        api.post(f"/jobs/{job_id}/cancel", as_=full),
        api.post(f"/jobs/{job_id}/ack", {"lease_id": str(uuid.uuid4())}, as_=full),
    ):
        assert call.status == 404 and call.body["code"] == "job_not_found"


def test_cancel_a_waiting_job_then_cancel_again_is_409(api: Api, full: str) -> None:
    job = push(api, full)
    assert api.post(f"/jobs/{job['id']}/cancel", as_=full).body["state"] == "cancelled"
    again = api.post(f"/jobs/{job['id']}/cancel", as_=full)
    assert again.status == 409 and again.body["code"] == "state_conflict"
    assert pull(api, full) == []


def test_cancelling_an_active_job_voids_its_lease(api: Api, full: str) -> None:
    push(api, full)
    [job] = pull(api, full)
    assert api.post(f"/jobs/{job['id']}/cancel", as_=full).status == 200
    assert api.post(f"/jobs/{job['id']}/ack", {"lease_id": job["lease_id"]}, as_=full).status == 409
    assert Job.objects.get(id=job["id"]).state == "cancelled"


def test_update_replaces_the_data_of_a_job_not_yet_started(api: Api, full: str) -> None:
    job = push(api, full, data={"v": 1})
    call = api.patch(f"/jobs/{job['id']}", {"data": {"v": 2}}, as_=full)
    assert call.status == 200 and call.body["data"] == {"v": 2}


def test_update_of_a_started_job_is_409(api: Api, full: str) -> None:
    push(api, full, data={"v": 1})
    [job] = pull(api, full)
    call = api.patch(f"/jobs/{job['id']}", {"data": {"v": 2}}, as_=full)
    assert call.status == 409
    assert Job.objects.get(id=job["id"]).data == {"v": 1}


@pytest.mark.parametrize("body", [{"data": [1]}, {}, {"data": {}, "lease": 1}])
def test_bad_update_bodies_are_400(api: Api, full: str, body: dict[str, object]) -> None:
    job = push(api, full, data={"v": 1})
    assert api.patch(f"/jobs/{job['id']}", body, as_=full).status == 400
    assert Job.objects.get(id=job["id"]).data == {"v": 1}


def test_retry_sends_a_failed_job_back_to_waiting(api: Api, full: str) -> None:
    push(api, full, max_attempts=1)
    [job] = pull(api, full)
    api.post(f"/jobs/{job['id']}/fail", {"lease_id": job["lease_id"], "error": "e"}, as_=full)
    call = api.post(f"/jobs/{job['id']}/retry", as_=full)
    assert call.status == 200 and call.body["state"] == "waiting" and call.body["attempts"] == 0
    assert call.body["errors"][0]["attempt"] == 1  # history is kept
    assert Job.objects.get(id=job["id"]).errors[0]["error"] == "e"
    assert [again["id"] for again in pull(api, full)] == [job["id"]]


def test_retry_of_a_waiting_job_is_409(api: Api, full: str) -> None:
    job = push(api, full)
    assert api.post(f"/jobs/{job['id']}/retry", as_=full).status == 409


def test_get_jobs_pages_with_a_cursor_and_filters_by_state(api: Api, full: str) -> None:
    ids = [
        job["id"]
        for job in api.post(
            "/queues/jobs:q/jobs/batch", {"jobs": [{"data": {}}] * 7}, as_=full
        ).body["jobs"]
    ]
    seen: list[str] = []
    cursor = None
    while True:
        query = "?limit=3" + (f"&cursor={cursor}" if cursor else "")
        call = api.get(f"/queues/jobs:q/jobs{query}", as_=full)
        assert call.status == 200
        seen += [job["id"] for job in call.body["jobs"]]
        cursor = call.body["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    pull(api, full, count=2)
    active = api.get("/queues/jobs:q/jobs?state=active", as_=full).body["jobs"]
    assert [job["id"] for job in active] == ids[:2]
    assert len(api.get("/queues/jobs:q/jobs?state=waiting", as_=full).body["jobs"]) == 5


@pytest.mark.parametrize(
    "query", ["?limit=0", "?limit=501", "?state=sleeping", "?cursor=!!", "?x=1"]
)
def test_bad_get_jobs_queries_are_400(api: Api, full: str, query: str) -> None:
    push(api, full)
    assert api.get(f"/queues/jobs:q/jobs{query}", as_=full).status == 400


def test_get_jobs_of_an_unknown_queue_is_404(api: Api, full: str) -> None:
    assert api.get("/queues/nope/jobs", as_=full).status == 404


def test_list_queues_shows_only_queues_the_token_may_see(api: Api, full: str) -> None:
    for name in ("jobs:a", "jobs:b", "secret"):
        push(api, full, queue=name)
    reader = make_token("reader", "jobs:*=getJob", deny=("jobs:b=*",))
    names = [q["name"] for q in api.get("/queues", as_=reader).body["queues"]]
    assert names == ["jobs:a"]
    assert len(api.get("/queues", as_=full).body["queues"]) == 3


def test_queue_stats_count_states_and_the_oldest_ready_job(api: Api, full: str) -> None:
    for _ in range(3):
        push(api, full)
    push(api, full, delay=60_000)
    held = push(api, full)["id"]
    Job.objects.filter(id=held).update(state=JobState.WAITING_CHILDREN)
    pull(api, full)
    call = api.get("/queues/jobs:q", as_=full)
    assert call.status == 200
    counts = call.body["counts"]
    assert (counts["waiting"], counts["active"], counts["delayed"], counts["completed"]) == (
        2,
        1,
        1,
        0,
    )
    assert counts["waiting-children"] == 1
    assert call.body["oldest_waiting_age_seconds"] >= 0
    listed = api.get("/queues/jobs:q/jobs?state=waiting-children", as_=full).body["jobs"]
    assert [(job["id"], job["state"]) for job in listed] == [(held, "waiting-children")]


def test_stats_and_pause_of_an_unknown_queue_are_404(api: Api, full: str) -> None:
    assert api.get("/queues/nope", as_=full).status == 404
    assert api.post("/queues/nope/pause", as_=full).status == 404


def test_health_and_readiness(api: Api) -> None:
    assert api.get("/healthz", as_=None).body == {"status": "ok"}
    assert api.get("/readyz", as_=None).body["database"] == "ok"


def test_an_unknown_api_route_is_a_problem_404(api: Api, full: str) -> None:
    call = api.get("/api/v1/nothing", as_=full)
    assert call.status == 404 and call.headers["Content-Type"] == "application/problem+json"


def test_a_wrong_method_is_405(api: Api, full: str) -> None:
    assert api.request("DELETE", "/queues/jobs:q/jobs", as_=full).status == 405


def test_retry_is_409_while_another_unfinished_job_holds_its_key(api: Api, full: str) -> None:
    first = push(api, full, key="k")
    api.post(f"/jobs/{first['id']}/cancel", as_=full)
    push(api, full, key="k")  # the key is free again, and taken by a new job
    call = api.post(f"/jobs/{first['id']}/retry", as_=full)
    assert call.status == 409 and call.body["code"] == "state_conflict"
    assert Job.objects.get(id=first["id"]).state == "cancelled"
