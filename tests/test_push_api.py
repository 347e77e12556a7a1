from __future__ import annotations

from typing import Any

import pytest

from compliance.models import AuditEvent
from queues.models import Job, Queue

from .support import Api, clear_audit, make_token, push

pytestmark = pytest.mark.django_db


def test_push_creates_the_queue_and_a_waiting_job(api: Api, full: str) -> None:
    call = api.post("/queues/jobs:email/jobs", {"data": {"userId": "u7"}, "priority": 3}, as_=full)
    assert call.status == 201
    assert call.body["queue"] == "jobs:email"
    assert call.body["state"] == "waiting"
    assert call.body["max_attempts"] == 3
    job = Job.objects.get(id=call.body["id"])
    assert job.priority == 3 and job.data == {"userId": "u7"}
    assert job.subject == "u7"  # taken from the queue's subject_path (userId)
    assert Queue.objects.filter(name="jobs:email").exists()


def test_push_with_every_option(api: Api, full: str) -> None:
    body = {
        "data": {"a": [1, 2]},
        "priority": -5,
        "delay": 60_000,
        "max_attempts": 7,
        "backoff": {"type": "fixed", "delay": 500, "max": 1000, "jitter": 0},
        "ttl": 3_600_000,
        "key": "order-1",
        "subject": "customer-9",
        "tags": ["a", "b"],
    }
    call = api.post("/queues/q/jobs", body, as_=full)
    assert call.status == 201
    assert call.body["state"] == "delayed"
    job = Job.objects.get(id=call.body["id"])
    assert (job.max_attempts, job.key, job.subject, job.tags) == (
        7,
        "order-1",
        "customer-9",
        ["a", "b"],
    )
    assert job.backoff == {"type": "fixed", "delay": 500, "max": 1000, "jitter": 0}
    assert job.expires_at is not None and job.expires_at > job.created_at


def test_a_repeated_key_returns_the_unfinished_job_with_200(api: Api, full: str) -> None:
    first = api.post("/queues/q/jobs", {"data": {"n": 1}, "key": "k"}, as_=full)
    again = api.post("/queues/q/jobs", {"data": {"n": 2}, "key": "k"}, as_=full)
    other_queue = api.post("/queues/q2/jobs", {"data": {"n": 3}, "key": "k"}, as_=full)
    assert (first.status, again.status, other_queue.status) == (201, 200, 201)
    assert again.body["id"] == first.body["id"]
    assert Job.objects.get(id=first.body["id"]).data == {"n": 1}


def test_a_repeated_key_is_recorded_once_per_call_and_writes_nothing_else(
    api: Api, full: str
) -> None:
    """On PostgreSQL a keyed push is one statement that gives way to the job holding
    its key: nothing of it (job, event) is left when it does, and the lookup after it
    answers and records the call."""
    push(api, full, queue="q")  # the queue exists, as on the hot path
    first = api.post("/queues/q/jobs", {"data": {"n": 1}, "key": "k", "delay": 60_000}, as_=full)
    clear_audit()
    again = api.post("/queues/q/jobs", {"data": {"n": 2}, "key": "k"}, as_=full)
    assert (first.status, again.status, again.body["id"]) == (201, 200, first.body["id"])
    assert Job.objects.filter(key="k").count() == 1
    [event] = AuditEvent.objects.all()
    assert (event.status, event.details, event.job_ids) == (
        200,
        {"created": False},
        [first.body["id"]],
    )


def test_a_key_is_free_again_once_its_job_finished(api: Api, full: str) -> None:
    first = push(api, full, queue="q", key="k")
    Job.objects.filter(id=first["id"]).update(state="completed")
    again = api.post("/queues/q/jobs", {"data": {}, "key": "k"}, as_=full)
    assert again.status == 201 and again.body["id"] != first["id"]


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"data": {}, "priority": 1_000_001}, "/priority"),
        ({"data": {}, "priority": "1"}, "/priority"),
        ({"data": {}, "priority": True}, "/priority"),
        ({"data": {}, "max_attempts": 0}, "/max_attempts"),
        ({"data": {}, "delay": -1}, "/delay"),
        ({"data": {}, "ttl": 0}, "/ttl"),
        ({"data": {}, "backoff": {"type": "linear"}}, "/backoff/type"),
        ({"data": {}, "backoff": {"delay": 1, "speed": 2}}, "/backoff/speed"),
        ({"data": {}, "tags": ["ok", 5]}, "/tags/1"),
        ({"data": {}, "key": ""}, "/key"),
        ({"data": [1]}, "/data"),
        ({}, "/data"),
        ({"data": {}, "colour": "red"}, "/colour"),
    ],
)
def test_bad_push_options_are_400_with_the_field_path(
    api: Api, full: str, body: dict[str, object], path: str
) -> None:
    call = api.post("/queues/q/jobs", body, as_=full)
    assert call.status == 400
    assert call.headers["Content-Type"] == "application/problem+json"
    assert {"type", "title", "status", "detail"} <= set(call.body)
    assert path in [error["path"] for error in call.body["errors"]]
    assert not Job.objects.exists() and not Queue.objects.exists()


@pytest.mark.parametrize(
    "name", ["-starts-with-dash", "has space", "semi;colon", "dollar$", "é", "x" * 129]
)
def test_a_bad_queue_name_is_400_naming_the_rule(api: Api, full: str, name: str) -> None:
    call = api.post(f"/queues/{name}/jobs", {"data": {}}, as_=full)
    assert call.status == 400
    assert "1 to 128 characters" in call.body["detail"]
    assert not Queue.objects.exists()


def test_malformed_json_is_400(api: Api, full: str) -> None:
    call = api.post("/queues/q/jobs", as_=full, raw='{"data": ')
    assert call.status == 400 and call.body["code"] == "parse_error"


def test_absurdly_deep_json_is_400_not_a_crash(api: Api, full: str) -> None:
    call = api.post("/queues/q/jobs", as_=full, raw='{"data": ' + "[" * 50_000 + "]" * 50_000 + "}")
    assert call.status == 400
    assert not Job.objects.exists()


def test_nan_is_not_json(api: Api, full: str) -> None:
    assert api.post("/queues/q/jobs", as_=full, raw='{"data": {"x": NaN}}').status == 400


def test_a_non_json_body_is_415(api: Api, full: str) -> None:
    call = api.post("/queues/q/jobs", as_=full, raw="data=1", content_type="text/plain")
    assert call.status == 415
    assert not Job.objects.exists()


def test_a_body_over_the_request_limit_is_413(api: Api, full: str, settings: object) -> None:
    settings.MAX_REQUEST_BYTES = 1000  # type: ignore[attr-defined]
    call = api.post("/queues/q/jobs", {"data": {"blob": "x" * 2000}}, as_=full)
    assert call.status == 413 and call.body["code"] == "payload_too_large"
    assert not Job.objects.exists()


def test_job_data_over_the_per_job_limit_is_413_naming_the_field(
    api: Api, full: str, settings: object
) -> None:
    settings.MAX_JOB_BYTES = 100  # type: ignore[attr-defined]
    call = api.post("/queues/q/jobs", {"data": {"blob": "x" * 200}}, as_=full)
    assert call.status == 413 and call.body["code"] == "payload_too_large"
    assert call.body["errors"][0]["path"] == "/data"
    assert "limit is 100" in call.body["errors"][0]["message"]


def test_batch_push_returns_jobs_in_input_order(api: Api, full: str) -> None:
    jobs = [{"data": {"n": n}} for n in range(5)]
    call = api.post("/queues/q/jobs/batch", {"jobs": jobs}, as_=full)
    assert call.status == 201
    ids = [job["id"] for job in call.body["jobs"]]
    assert [Job.objects.get(id=i).data["n"] for i in ids] == list(range(5))
    assert all(job["created"] for job in call.body["jobs"])


def test_batch_push_is_all_or_nothing(api: Api, full: str) -> None:
    jobs: list[dict[str, Any]] = [{"data": {"n": n}} for n in range(10)]
    jobs[7]["priority"] = "high"
    call = api.post("/queues/q/jobs/batch", {"jobs": jobs}, as_=full)
    assert call.status == 400
    assert [error["path"] for error in call.body["errors"]] == ["/jobs/7/priority"]
    assert not Job.objects.exists()


def test_batch_push_refuses_more_than_1000_or_none(api: Api, full: str) -> None:
    too_many: dict[str, Any] = {"jobs": [{"data": {}}] * 1001}
    assert api.post("/queues/q/jobs/batch", too_many, as_=full).status == 400
    assert api.post("/queues/q/jobs/batch", {"jobs": []}, as_=full).status == 400
    assert not Job.objects.exists()


def test_batch_push_of_1000_works(api: Api, full: str) -> None:
    call = api.post(
        "/queues/q/jobs/batch", {"jobs": [{"data": {"n": n}} for n in range(1000)]}, as_=full
    )
    assert call.status == 201 and len(call.body["jobs"]) == 1000
    assert Job.objects.count() == 1000


def test_batch_keys_return_existing_jobs(api: Api, full: str) -> None:
    existing = push(api, full, queue="q", key="a")
    jobs = [{"data": {}, "key": "a"}, {"data": {}, "key": "b"}, {"data": {}, "key": "b"}]
    call = api.post("/queues/q/jobs/batch", {"jobs": jobs}, as_=full)
    body = call.body["jobs"]
    assert body[0]["id"] == existing["id"] and body[0]["created"] is False
    assert body[1]["created"] is True
    assert body[2]["id"] == body[1]["id"] and body[2]["created"] is False
    assert Job.objects.count() == 2


def test_a_keyed_batch_with_a_held_key_writes_only_what_the_lookup_answers(
    api: Api, full: str
) -> None:
    """On PostgreSQL a keyed batch first goes in without a lookup; a held key fails that
    insert, and it must leave no job and no event behind: one push event per call, the
    jobs the lookup path answers, each created once."""
    existing = push(api, full, queue="q", key="held")
    clear_audit()
    jobs = [{"data": {"n": n}, "key": f"fresh-{n}"} for n in range(3)]
    call = api.post(
        "/queues/q/jobs/batch", {"jobs": [*jobs, {"data": {}, "key": "held"}]}, as_=full
    )
    assert call.status == 201
    assert [job["created"] for job in call.body["jobs"]] == [True, True, True, False]
    assert call.body["jobs"][3]["id"] == existing["id"]
    assert Job.objects.count() == 4
    [event] = AuditEvent.objects.filter(action="push")
    assert event.job_ids == [job["id"] for job in call.body["jobs"]]
    assert event.details["created"] == 3


def test_a_keyed_batch_refused_for_another_family_s_key_stores_nothing(api: Api, full: str) -> None:
    other = make_token("other", "*=*")
    push(api, other, queue="q", key="theirs")
    clear_audit()
    jobs = [{"data": {}, "key": "mine-1"}, {"data": {}, "key": "theirs"}]
    call = api.post("/queues/q/jobs/batch", {"jobs": jobs}, as_=full)
    assert (call.status, call.body["code"]) == (409, "key_conflict")
    assert list(Job.objects.values_list("key", flat=True)) == ["theirs"]
    assert not AuditEvent.objects.filter(action="push", outcome="ok").exists()


@pytest.mark.parametrize("batch", [1, 3])
def test_a_key_taken_between_lookup_and_insert_returns_the_winner(
    api: Api, full: str, monkeypatch: pytest.MonkeyPatch, batch: int
) -> None:
    """Two pushes with one key race: the loser's insert hits the unique constraint, and
    it answers with the winner's job instead of an error (single and batch paths)."""
    from queues import services

    winner = push(api, full, queue="q", key="k")
    real = services.push._push_once
    calls: list[int] = []

    def lookup_missed_the_winner(
        queue: Any, specs: Any, now: Any, owner: str, record: Any, readable: Any
    ) -> Any:
        calls.append(1)
        if len(calls) == 1:  # as if our lookup ran before the winner committed
            Job.objects.bulk_create([services.push._new_job(queue, specs[0], now, owner)])
        return real(queue, specs, now, owner, record, readable)

    monkeypatch.setattr(services.push, "_push_once", lookup_missed_the_winner)
    jobs = [{"data": {}, "key": "k"}] + [{"data": {"n": n}} for n in range(batch - 1)]
    again = api.post("/queues/q/jobs/batch", {"jobs": jobs}, as_=full)
    assert again.status == 201
    assert again.body["jobs"][0] == {**again.body["jobs"][0], "id": winner["id"], "created": False}
    assert len(calls) == 2 and Job.objects.count() == batch


def test_batch_data_round_trips_exactly(api: Api, full: str) -> None:
    tricky = {"text": 'tab\t nl\n cr\r back\\slash "quote" é 😀 \\N', "n": [1.5, -0, None, True]}
    jobs = [{"data": tricky, "tags": ["a\tb"], "key": "k\\N"}, {"data": {}}]
    call = api.post("/queues/q/jobs/batch", {"jobs": jobs}, as_=full)
    stored = Job.objects.get(id=call.body["jobs"][0]["id"])
    assert (stored.data, stored.tags, stored.key) == (tricky, ["a\tb"], "k\\N")
    assert stored.result is None and stored.errors == []


def test_a_new_job_has_the_model_defaults_and_the_spec_values() -> None:
    """The push builds jobs positionally (for speed): every field must land where
    Job(**kwargs) would put it."""
    from datetime import timedelta

    from django.utils import timezone

    from queues import services
    from queues.jobspec import JobSpec
    from queues.models import Queue

    queue = Queue.objects.create(name="shape", subject_path="user")
    now = timezone.now()
    spec = JobSpec(
        data={"user": "u7"}, priority=4, delay_ms=1500, max_attempts=5, ttl_ms=9000,
        key="k1", tags=("a", "b"),
    )  # fmt: skip
    built = services.push._new_job(queue, spec, now, "family:x")
    expected = Job(
        queue=queue, priority=4, data={"user": "u7"}, max_attempts=5, backoff=spec.backoff,
        run_at=now + timedelta(milliseconds=1500), expires_at=now + timedelta(milliseconds=9000),
        key="k1", subject="u7", tags=["a", "b"], pushed_by="family:x", created_at=now,
    )  # fmt: skip
    for field in Job._meta.concrete_fields:
        if field.attname != "id":
            assert getattr(built, field.attname) == getattr(expected, field.attname), field.name
    assert built.id != expected.id and built.queue is queue and built._state.adding
    # Defaults made once (services.push._DEFAULTS) are never shared where they could change.
    again = services.push._new_job(queue, spec, now, "family:x")
    assert again.id != built.id
    for field in Job._meta.concrete_fields:
        value = built.__dict__[field.attname]
        if isinstance(value, list | dict) and field.attname not in ("data", "backoff"):  # spec's
            assert value is not again.__dict__[field.attname], field.name
