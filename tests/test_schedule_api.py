"""The schedule routes: put (create or replace), get, list, delete, pause, resume and
trigger; bad input is a 400 naming the field and changes nothing; a template that the
queue's schema or card guard refuses is a 422; the ``schedule`` verb governs them all;
each call leaves its audit event; the template's data is sealed at rest."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from compliance.models import AuditEvent
from queues.api import serializers
from queues.models import Job, Queue, Schedule
from queues.schedulespec import SCHEDULE_FIELDS, TEMPLATE_FIELDS
from security.services import token_revoke

from .support import SETUP, Api, make_token

pytestmark = pytest.mark.django_db

URL = "/queues/jobs:s/schedules"
NIGHTLY = {"cron": "30 2 * * *", "timezone": "Europe/Berlin", "data": {"report": "daily"}}


def _put(api: Api, token: str, body: Any, name: str = "nightly", queue: str = "jobs:s") -> Any:
    return api.request("PUT", f"/queues/{queue}/schedules/{name}", body, as_=token)


def _actions() -> list[str]:
    return list(AuditEvent.objects.order_by("id").values_list("action", flat=True))


def test_put_creates_then_replaces_and_answers_the_next_run(api: Api, full: str) -> None:
    call = _put(api, full, NIGHTLY)
    assert call.status == 201, call.body
    assert call.body["name"] == "nightly"
    assert call.body["cron"] == "30 2 * * *"
    assert call.body["timezone"] == "Europe/Berlin"
    assert call.body["next_run_at"] is not None
    assert call.body["last_run_at"] is None and call.body["last_job_id"] is None
    assert call.body["paused"] is False
    assert Queue.objects.filter(name="jobs:s").exists()  # created by the put
    again = _put(api, full, {"every_ms": 60_000, "data": {"n": 2}, "priority": 5})
    assert again.status == 200
    assert again.body["cron"] is None and again.body["every_ms"] == 60_000
    assert again.body["priority"] == 5
    assert Schedule.objects.count() == 1
    saves = AuditEvent.objects.filter(action="schedule.save").order_by("id")
    assert [event.details["created"] for event in saves] == [True, False]
    assert all("report" not in str(event.details) for event in saves)  # never the data


def test_get_list_and_delete(api: Api, full: str) -> None:
    _put(api, full, NIGHTLY)
    _put(api, full, {"every_ms": 5000, "data": {}}, name="often")
    one = api.get(f"{URL}/nightly", as_=full)
    assert one.status == 200 and one.body["data"] == {"report": "daily"}
    listed = api.get(URL, as_=full)
    assert [s["name"] for s in listed.body["schedules"]] == ["nightly", "often"]
    gone = api.request("DELETE", f"{URL}/nightly", {"reason": "not needed"}, as_=full)
    assert gone.status == 204
    assert api.get(f"{URL}/nightly", as_=full).status == 404
    assert api.request("DELETE", f"{URL}/nightly", as_=full).status == 404
    assert api.post(f"{URL}/nope/pause", as_=full).body["code"] == "schedule_not_found"
    event = AuditEvent.objects.get(action="schedule.delete", outcome="ok")
    assert event.details == {"name": "nightly", "reason": "not needed"}
    assert {"getSchedule", "getSchedules"} <= set(_actions())


def test_pause_resume_and_trigger(api: Api, full: str) -> None:
    _put(api, full, NIGHTLY)
    paused = api.post(f"{URL}/nightly/pause", {"reason": "maintenance"}, as_=full)
    assert paused.status == 200 and paused.body["paused"] is True
    before = paused.body["next_run_at"]
    triggered = api.post(f"{URL}/nightly/trigger", as_=full)
    assert triggered.status == 201
    job = Job.objects.get(id=triggered.body["id"])
    assert job.data == {"report": "daily"} and job.queue.name == "jobs:s"
    schedule = api.get(f"{URL}/nightly", as_=full).body
    assert schedule["last_job_id"] == str(job.id)
    assert schedule["next_run_at"] == before  # a trigger does not move the next run
    resumed = api.post(f"{URL}/nightly/resume", as_=full)
    assert resumed.status == 200 and resumed.body["paused"] is False
    event = AuditEvent.objects.get(action="schedule.pause", outcome="ok")
    assert event.details["reason"] == "maintenance"
    trigger = AuditEvent.objects.get(action="schedule.trigger")
    assert trigger.job_ids == [str(job.id)] and trigger.actor == "token:full"


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"cron": "61 * * * *", "data": {}}, "/cron"),
        ({"cron": "* * *", "data": {}}, "/cron"),
        ({"cron": 5, "data": {}}, "/cron"),
        ({"data": {}}, "/cron"),
        ({"cron": "* * * * *", "every_ms": 1000, "data": {}}, "/cron"),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus", "data": {}}, "/timezone"),
        ({"every_ms": 10, "data": {}}, "/every_ms"),
        ({"every_ms": "1000", "data": {}}, "/every_ms"),
        ({"every_ms": 1000, "data": {}, "priority": "x"}, "/priority"),
        ({"every_ms": 1000, "data": {}, "max_attempts": 0}, "/max_attempts"),
        ({"every_ms": 1000, "data": {}, "timeout": -1}, "/timeout"),
        ({"every_ms": 1000, "data": {}, "delay": 5}, "/delay"),
        ({"every_ms": 1000, "data": {}, "colour": "red"}, "/colour"),
        ({"every_ms": 1000}, "/data"),
        ({"every_ms": 1000, "data": []}, "/data"),
        ({"every_ms": 1000, "data": {}, "catch_up": "some"}, "/catch_up"),
        ({"every_ms": 1000, "data": {}, "max_catch_up": 0}, "/max_catch_up"),
        ({"every_ms": 1000, "data": {}, "start_at": "yesterday"}, "/start_at"),
        ({"every_ms": 1000, "data": {}, "start_at": "2026-01-01T00:00:00"}, "/start_at"),
        (
            {
                "every_ms": 1000,
                "data": {},
                "start_at": "2026-02-01T00:00:00Z",
                "end_at": "2026-01-01T00:00:00Z",
            },
            "/end_at",
        ),
    ],
)
def test_invalid_input_is_a_400_naming_the_field_and_changes_nothing(
    api: Api, full: str, body: dict[str, Any], path: str
) -> None:
    _put(api, full, NIGHTLY)
    before = Schedule.objects.get().cron
    call = _put(api, full, body)
    assert call.status == 400, call.body
    assert path in [error["path"] for error in call.body["errors"]]
    assert Schedule.objects.get().cron == before
    fresh = _put(api, full, body, name="fresh", queue="jobs:new")
    assert fresh.status == 400
    assert not Queue.objects.filter(name="jobs:new").exists()


def test_a_template_off_the_queues_schema_is_a_422_and_changes_nothing(api: Api, full: str) -> None:
    schema = {"type": "object", "required": ["report"]}
    assert api.request("PUT", "/queues/jobs:s/schema", {"schema": schema}, as_=full).status == 200
    call = _put(api, full, {"every_ms": 1000, "data": {"other": 1}})
    assert call.status == 422 and call.body["code"] == "schema_validation_failed"
    assert not Schedule.objects.exists()


def test_a_card_number_in_the_template_is_a_422_and_changes_nothing(api: Api, full: str) -> None:
    call = _put(api, full, {"every_ms": 1000, "data": {"pan": "4111 1111 1111 1111"}})
    assert call.status == 422
    assert [error["path"] for error in call.body["errors"]] == ["/data/pan"]
    tagged = _put(api, full, {"every_ms": 1000, "data": {}, "tags": ["4111111111111111"]})
    assert tagged.status == 422
    assert not Schedule.objects.exists()
    assert not Queue.objects.filter(name="jobs:s").exists()


def test_the_template_data_is_sealed_at_rest_and_masked_without_reveal(api: Api, full: str) -> None:
    Queue.objects.update_or_create(name="jobs:s", defaults={"sensitive_fields": ["email"]})
    assert _put(api, full, {"every_ms": 1000, "data": {"email": "a@example.com"}}).status == 201
    with connection.cursor() as cursor:
        cursor.execute("SELECT data FROM queues_schedule")
        [(raw,)] = cursor.fetchall()
    assert b"a@example.com" not in bytes(raw)
    assert Schedule.objects.get().data == {"email": "a@example.com"}
    assert api.get(f"{URL}/nightly", as_=full).body["data"] == {"email": "[MASKED]"}
    revealer = make_token("revealer", "jobs:*=schedule,reveal")
    assert api.get(f"{URL}/nightly", as_=revealer).body["data"] == {"email": "a@example.com"}


def test_the_schedule_verb_governs_every_route(api: Api, full: str) -> None:
    _put(api, full, NIGHTLY)
    pusher = make_token("pusher", "jobs:*=push,getJob,getJobs,pull,admin")
    scheduler = make_token("scheduler", "jobs:*=schedule,push")
    calls = [
        ("PUT", f"{URL}/nightly", NIGHTLY),
        ("GET", f"{URL}/nightly", None),
        ("GET", URL, None),
        ("POST", f"{URL}/nightly/pause", None),
        ("POST", f"{URL}/nightly/resume", None),
        ("POST", f"{URL}/nightly/trigger", None),
        ("DELETE", f"{URL}/nightly", None),
    ]
    for method, path, body in calls:
        refused = api.request(method, path, body, as_=pusher)
        assert refused.status == 403, (method, path)
        other = api.request(method, path.replace("jobs:s", "other:s"), body, as_=scheduler)
        assert other.status == 403, (method, path)
    assert Schedule.objects.get().paused is False
    assert not Job.objects.exists()
    denied = AuditEvent.objects.filter(outcome="denied")
    assert denied.count() == 2 * len(calls)
    for method, path, body in calls:
        assert api.request(method, path, body, as_=scheduler).status < 300, (method, path)


def test_put_and_trigger_need_push_as_well_as_schedule(api: Api, full: str) -> None:
    """``schedule`` alone must not make jobs where push is not allowed: a token with
    only ``schedule`` (or whose deny rule covers push) is refused PUT and trigger, and
    nothing is made or changed; the routes that make no job stay open to it."""
    _put(api, full, NIGHTLY)
    before = Schedule.objects.get()
    only = make_token("only-schedule", "jobs:*=schedule")
    denied = make_token("push-denied", "jobs:*=*", deny=("jobs:s=push",))
    replace = {"every_ms": 1000, "data": {"x": 1}}
    for token in (only, denied):
        for method, path, body in (
            ("PUT", f"{URL}/nightly", replace),
            ("PUT", f"{URL}/new", replace),
            ("POST", f"{URL}/nightly/trigger", None),
        ):
            call = api.request(method, path, body, as_=token)
            assert call.status == 403, (method, path, call.body)
            assert call.headers["Content-Type"] == "application/problem+json"
            assert "push" in call.body["detail"]
        assert api.get(f"{URL}/nightly", as_=token).status == 200
        assert api.post(f"{URL}/nightly/pause", as_=token).status == 200
        assert api.post(f"{URL}/nightly/resume", as_=token).status == 200
    after = Schedule.objects.get()
    assert (after.every_ms, after.cron, after.data) == (None, before.cron, before.data)
    assert not Job.objects.exists()
    refusals = AuditEvent.objects.filter(outcome="denied", status=403)
    assert refusals.count() == 6
    assert {e.action for e in refusals} == {"schedule.save", "schedule.trigger"}


def test_documented_shapes_match_what_the_api_parses_and_returns(api: Api, full: str) -> None:
    assert set(serializers.ScheduleIn().fields) == TEMPLATE_FIELDS | SCHEDULE_FIELDS
    body = _put(api, full, NIGHTLY).body
    assert set(serializers.ScheduleOut().fields) == set(body)


def test_a_reason_is_optional_kept_in_the_event_and_never_holds_a_card_number(
    api: Api, full: str
) -> None:
    _put(api, full, NIGHTLY)
    card = {"reason": "card 4111 1111 1111 1111"}
    for action in ("pause", "resume", "trigger"):
        refused = api.post(f"{URL}/nightly/{action}", card, as_=full)
        assert refused.status == 422 and refused.body["errors"][0]["path"] == "/reason"
    assert api.request("DELETE", f"{URL}/nightly", card, as_=full).status == 422
    assert Schedule.objects.get().paused is False and not Job.objects.exists()
    assert api.post(f"{URL}/nightly/pause", {"reason": 5}, as_=full).status == 400
    assert api.post(f"{URL}/nightly/pause", {"why": "x"}, as_=full).status == 400
    trail = str(list(AuditEvent.objects.values_list("details", flat=True)))
    assert "1111 1111" not in trail and "4111111111111111" not in trail  # BIN and last 4 only
    assert Schedule.objects.get().paused is False


def test_a_body_that_is_not_an_object_is_a_400(api: Api, full: str) -> None:
    call = _put(api, full, ["cron", "* * * * *"])
    assert call.status == 400 and call.body["errors"][0]["path"] == "/"
    assert not Schedule.objects.exists()


def test_a_push_may_not_take_a_ticks_key(api: Api, full: str) -> None:
    """A tick's job is keyed schedule:<name>:<tick>: a client holding that key (and so
    the tick's job) would make the tick push nothing, so the prefix is refused."""
    key = "schedule:nightly:2026-12-07T01:30:00Z"
    single = api.post("/queues/jobs:s/jobs", {"data": {}, "key": key}, as_=full)
    assert single.status == 400
    assert [error["path"] for error in single.body["errors"]] == ["/key"]
    batch = api.post(
        "/queues/jobs:s/jobs/batch",
        {"jobs": [{"data": {}}, {"data": {}, "key": key}]},
        as_=full,
    )
    assert batch.status == 400
    assert [error["path"] for error in batch.body["errors"]] == ["/jobs/1/key"]
    assert not Job.objects.exists()
    # Another key mentioning schedules is an ordinary key.
    assert (
        api.post("/queues/jobs:s/jobs", {"data": {}, "key": "my-schedule:1"}, as_=full).status
        == 201
    )


def test_trigger_of_a_schedule_whose_owner_was_revoked_is_refused(api: Api, full: str) -> None:
    """Trigger pushes as the schedule's owner: with no live token left in that family it
    is a 403 ``owner_revoked`` and makes nothing; a PUT by a live token takes it over."""
    owner = make_token("owner", "jobs:*=schedule,push")
    assert _put(api, owner, NIGHTLY).status == 201
    token_revoke(name="owner", actor=SETUP)
    refused = api.post(f"{URL}/nightly/trigger", as_=full)
    assert (refused.status, refused.body["code"]) == (403, "owner_revoked")
    assert not Job.objects.exists()
    assert _put(api, full, NIGHTLY).status == 200
    assert api.post(f"{URL}/nightly/trigger", as_=full).status == 201
