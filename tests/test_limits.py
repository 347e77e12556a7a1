"""Every stored client value is capped. Data and results over MAX_JOB_BYTES are a 413
naming the field, wherever they come in, and change nothing."""

from __future__ import annotations

from typing import Any

import pytest

from compliance.models import AuditEvent
from kernel import limits
from queues.models import Job, JobState

from .personas import superuser_client
from .support import Api, pull, push

pytestmark = pytest.mark.django_db

BIG = {"blob": "x" * 200}


@pytest.fixture(autouse=True)
def small_jobs(settings: Any) -> None:
    settings.MAX_JOB_BYTES = 100


def _too_large(call: Any, *paths: str) -> None:
    assert call.status == 413, call.body
    assert call.body["code"] == "payload_too_large"
    assert [error["path"] for error in call.body["errors"]][: len(paths)] == list(paths)
    assert "the limit is 100" in call.body["errors"][0]["message"]


def test_push_batch_and_update_refuse_big_data_naming_the_item(api: Api, full: str) -> None:
    _too_large(api.post("/queues/q/jobs", {"data": BIG}, as_=full), "/data")
    batch = {"jobs": [{"data": {}}, {"data": BIG}]}
    _too_large(api.post("/queues/q/jobs/batch", batch, as_=full), "/jobs/1/data")
    assert not Job.objects.exists()
    job = push(api, full, queue="q")
    _too_large(api.patch(f"/jobs/{job['id']}", {"data": BIG}, as_=full), "/data")
    assert Job.objects.get(id=job["id"]).data == {"n": 1}


def test_a_big_result_is_refused_and_the_job_stays_active(api: Api, full: str) -> None:
    push(api, full, queue="q")
    [job] = pull(api, full, queue="q")
    ack = {"lease_id": job["lease_id"], "result": BIG}
    _too_large(api.post(f"/jobs/{job['id']}/ack", ack, as_=full), "/result")
    stored = Job.objects.get(id=job["id"])
    assert (stored.state, stored.result) == (JobState.ACTIVE, None)
    assert str(stored.lease_id) == job["lease_id"]
    event = AuditEvent.objects.order_by("id").last()
    assert event is not None
    assert (event.status, event.details) == (
        413,
        {"code": "payload_too_large", "paths": ["/result"]},
    )
    # The same lease can still finish the job with a result that fits.
    ok = api.post(f"/jobs/{job['id']}/ack", {"lease_id": job["lease_id"], "result": {}}, as_=full)
    assert ok.status == 200 and ok.body["state"] == "completed"


def test_a_big_result_in_a_batch_ack_acks_nothing(api: Api, full: str) -> None:
    for _ in range(2):
        push(api, full, queue="q")
    jobs = pull(api, full, queue="q", count=2)
    acks = [{"id": j["id"], "lease_id": j["lease_id"], "result": {}} for j in jobs]
    acks[1]["result"] = BIG
    _too_large(api.post("/jobs/ack", {"jobs": acks}, as_=full), "/jobs/1/result")
    assert set(Job.objects.values_list("state", flat=True)) == {JobState.ACTIVE}


def test_other_stored_strings_have_their_caps(api: Api, full: str) -> None:
    too_long = {
        "key": "k" * (limits.MAX_KEY_LENGTH + 1),
        "subject": "s" * (limits.MAX_SUBJECT_LENGTH + 1),
        "tags": ["t" * (limits.MAX_TAG_LENGTH + 1)],
    }
    call = api.post("/queues/q/jobs", {"data": {}, **too_long}, as_=full)
    assert call.status == 400
    assert {error["path"] for error in call.body["errors"]} == {"/key", "/subject", "/tags/0"}
    push(api, full, queue="q")
    [job] = pull(api, full, queue="q")
    message = "m" * (limits.MAX_PROGRESS_MESSAGE + 1)
    progress = {"lease_id": job["lease_id"], "progress": 1, "message": message}
    assert api.post(f"/jobs/{job['id']}/progress", progress, as_=full).status == 400
    error = "e" * (limits.MAX_FAIL_ERROR_INPUT + 1)
    fail = {"lease_id": job["lease_id"], "error": error}
    assert api.post(f"/jobs/{job['id']}/fail", fail, as_=full).status == 400
    fail["error"] = "e" * (limits.MAX_ERROR_LENGTH + 5)
    assert api.post(f"/jobs/{job['id']}/fail", fail, as_=full).status == 200
    stored = Job.objects.get(id=job["id"])
    assert len(stored.error) == limits.MAX_ERROR_LENGTH
    assert len(stored.errors[-1]["error"]) == limits.MAX_ERROR_LENGTH


def test_the_schema_states_the_limits_the_server_enforces(api: Api) -> None:
    schema = api.client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    components = schema.json()["components"]["schemas"]
    pull_in = components["PullInRequest"]["properties"]
    assert pull_in["count"]["maximum"] == limits.MAX_PULL_COUNT
    assert pull_in["wait"]["maximum"] == limits.MAX_WAIT_SECONDS
    assert pull_in["lease"]["maximum"] == limits.MAX_LEASE_SECONDS
    assert components["PushBatchInRequest"]["properties"]["jobs"]["maxItems"] == limits.MAX_BATCH
    assert components["AckBatchInRequest"]["properties"]["jobs"]["maxItems"] == limits.MAX_BATCH
    push_in = components["PushInRequest"]["properties"]
    assert push_in["key"]["maxLength"] == limits.MAX_KEY_LENGTH
    assert push_in["priority"]["maximum"] == limits.MAX_PRIORITY
    assert components["ProgressInRequest"]["properties"]["message"]["maxLength"] == (
        limits.MAX_PROGRESS_MESSAGE
    )


def test_a_batch_ack_body_has_a_smaller_cap_since_it_is_read_before_authorising(
    api: Api, settings: Any
) -> None:
    from .support import make_token

    nobody = make_token("nobody", "nothing=ack")
    settings.MAX_ACK_BATCH_BYTES = 1000
    settings.MAX_REQUEST_BYTES = 10_000
    item = {"id": "00000000-0000-0000-0000-000000000000", "lease_id": "x" * 30}
    call = api.post("/jobs/ack", {"jobs": [item] * 20}, as_=nobody)
    assert call.status == 413 and "1000 bytes" in call.body["detail"]
    # Routes that authorise first keep the general cap.
    assert api.post("/queues/nothing/jobs", {"data": {"x": "y" * 2000}}, as_=nobody).status == 403


def test_a_body_with_too_many_arrays_is_refused_before_it_is_parsed(
    api: Api, full: str, settings: Any
) -> None:
    settings.MAX_JOB_BYTES = 10 * 1024 * 1024
    many = "[" + ",".join(["[]"] * (limits.MAX_CONTAINERS + 1)) + "]"
    call = api.post("/queues/q/jobs", as_=full, raw='{"data": {"a": ' + many + "}}")
    assert call.status == 413 and "arrays and objects" in call.body["detail"]
    assert not Job.objects.exists()
    # A large batch of ordinary jobs stays well within it.
    jobs = [
        {"data": {"user": {"id": n, "tags": [1, 2], "meta": {"a": {"b": []}}}}} for n in range(1000)
    ]
    assert api.post("/queues/q/jobs/batch", {"jobs": jobs}, as_=full).status == 201


def test_wide_objects_and_arrays_are_413_naming_the_path(
    api: Api, full: str, settings: Any
) -> None:
    settings.MAX_JOB_BYTES = 10 * 1024 * 1024
    wide = {f"k{n}": n for n in range(limits.MAX_KEYS_PER_OBJECT + 1)}
    call = api.post("/queues/q/jobs", {"data": {"user": wide}}, as_=full)
    assert call.status == 413 and call.body["errors"][0]["path"] == "/data/user"
    long = list(range(limits.MAX_ITEMS_PER_ARRAY + 1))
    push(api, full, queue="q")
    [job] = pull(api, full, queue="q")
    ack = {"lease_id": job["lease_id"], "result": {"rows": long}}
    call = api.post(f"/jobs/{job['id']}/ack", ack, as_=full)
    assert call.status == 413 and call.body["errors"][0]["path"] == "/result/rows"
    assert Job.objects.get(id=job["id"]).state == JobState.ACTIVE


def test_a_queue_can_cap_its_jobs_lower(api: Api, full: str, settings: Any) -> None:
    from queues.models import Queue

    settings.MAX_JOB_BYTES = 10_000
    push(api, full, queue="small")
    queue = Queue.objects.get(name="small")
    admin = superuser_client()
    form = {"subject_path": "userId", "max_job_bytes": "50", "_save": "Save"}
    assert admin.post(f"/admin/queues/queue/{queue.pk}/change/", form).status_code == 302
    big = {"data": {"blob": "x" * 100}}
    call = api.post("/queues/small/jobs", big, as_=full)
    assert call.status == 413 and "this queue's limit is 50" in call.body["errors"][0]["message"]
    batch = api.post("/queues/small/jobs/batch", {"jobs": [{"data": {}}, big]}, as_=full)
    assert batch.status == 413 and batch.body["errors"][0]["path"] == "/jobs/1/data"
    job = push(api, full, queue="small")
    assert api.patch(f"/jobs/{job['id']}", big, as_=full).status == 413
    assert api.post("/queues/other/jobs", big, as_=full).status == 201  # only that queue
    too_high = {**form, "max_job_bytes": "20000"}
    assert admin.post(f"/admin/queues/queue/{queue.pk}/change/", too_high).status_code == 200
