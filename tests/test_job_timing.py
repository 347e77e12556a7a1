"""Moving a waiting job in time: promote (a delayed job ready now), PATCH priority and
run_at, and the ``delayed`` state in getJobs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from compliance.audit.models import AuditEvent
from queues.models import Job

from .support import Api, make_token, pull, push

pytestmark = pytest.mark.django_db


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def test_promote_makes_a_delayed_job_ready_and_it_is_pulled_next(api: Api, full: str) -> None:
    ready = push(api, full, priority=0)
    delayed = push(api, full, priority=5, delay=3_600_000)
    call = api.post(f"/jobs/{delayed['id']}/promote", {"reason": "customer waiting"}, as_=full)
    assert call.status == 200 and call.body["state"] == "waiting"
    assert [job["id"] for job in pull(api, full)] == [delayed["id"]]
    assert [job["id"] for job in pull(api, full)] == [ready["id"]]
    [event] = AuditEvent.objects.filter(action="promote")
    assert event.job_ids == [delayed["id"]] and event.details["reason"] == "customer waiting"


def test_promote_takes_no_body(api: Api, full: str) -> None:
    delayed = push(api, full, delay=60_000)
    assert api.post(f"/jobs/{delayed['id']}/promote", as_=full).status == 200


@pytest.mark.parametrize("state", ["waiting", "active", "completed"])
def test_promoting_a_job_that_is_not_delayed_is_409(api: Api, full: str, state: str) -> None:
    job = push(api, full)
    if state != "waiting":
        [leased] = pull(api, full)
        if state == "completed":
            body = {"lease_id": leased["lease_id"]}
            assert api.post(f"/jobs/{job['id']}/ack", body, as_=full).status == 200
    before = Job.objects.get(id=job["id"])
    call = api.post(f"/jobs/{job['id']}/promote", as_=full)
    assert call.status == 409 and call.body["code"] == "state_conflict"
    after = Job.objects.get(id=job["id"])
    assert (after.state, after.run_at) == (before.state, before.run_at)
    assert not AuditEvent.objects.filter(action="promote", outcome="ok").exists()


def test_promote_needs_the_update_verb(api: Api, full: str) -> None:
    producer = make_token("producer", "jobs:*=push,getJob,cancel")
    delayed = push(api, full, delay=60_000)
    assert api.post(f"/jobs/{delayed['id']}/promote", as_=producer).status == 403
    assert Job.objects.get(id=delayed["id"]).run_at > timezone.now()
    updater = make_token("updater", "jobs:*=update")
    assert api.post(f"/jobs/{delayed['id']}/promote", as_=updater).status == 200


def test_patch_priority_reorders_a_waiting_job(api: Api, full: str) -> None:
    first = push(api, full, priority=0)
    second = push(api, full, priority=0)
    call = api.patch(f"/jobs/{second['id']}", {"priority": 10}, as_=full)
    assert call.status == 200 and call.body["priority"] == 10
    assert [job["id"] for job in pull(api, full, count=2)] == [second["id"], first["id"]]
    [event] = AuditEvent.objects.filter(action="update")
    assert event.details == {"fields": ["priority"]}


def test_patch_run_at_delays_and_readies_a_job(api: Api, full: str) -> None:
    job = push(api, full)
    later = timezone.now() + timedelta(hours=1)
    call = api.patch(f"/jobs/{job['id']}", {"run_at": _iso(later)}, as_=full)
    assert call.status == 200 and call.body["state"] == "delayed"
    assert pull(api, full) == []
    past = timezone.now() - timedelta(seconds=1)
    body = {"run_at": _iso(past), "priority": 3}
    assert api.patch(f"/jobs/{job['id']}", body, as_=full).body["state"] == "waiting"
    assert [pulled["id"] for pulled in pull(api, full)] == [job["id"]]
    events = AuditEvent.objects.filter(action="update").order_by("id")
    assert [event.details["fields"] for event in events] == [["run_at"], ["priority", "run_at"]]


def test_the_update_event_never_holds_the_data(api: Api, full: str) -> None:
    job = push(api, full, data={"v": 1})
    body = {"data": {"secret": "s3cr3t-value"}, "priority": 2}
    assert api.patch(f"/jobs/{job['id']}", body, as_=full).status == 200
    [event] = AuditEvent.objects.filter(action="update")
    assert event.details == {"fields": ["data", "priority"]}
    assert "s3cr3t-value" not in str(event.details)


def test_priority_and_run_at_of_a_retried_job_may_change_but_not_its_data(
    api: Api, full: str
) -> None:
    job = push(api, full, data={"v": 1}, max_attempts=1)
    [leased] = pull(api, full)
    api.post(f"/jobs/{job['id']}/fail", {"lease_id": leased["lease_id"]}, as_=full)
    assert api.post(f"/jobs/{job['id']}/retry", as_=full).status == 200
    assert api.patch(f"/jobs/{job['id']}", {"priority": 7}, as_=full).status == 200
    assert api.patch(f"/jobs/{job['id']}", {"data": {"v": 2}}, as_=full).status == 409
    assert Job.objects.get(id=job["id"]).data == {"v": 1}


@pytest.mark.parametrize("state", ["active", "completed", "cancelled"])
def test_patch_of_an_active_or_finished_job_is_409(api: Api, full: str, state: str) -> None:
    job = push(api, full, priority=1)
    if state == "cancelled":
        api.post(f"/jobs/{job['id']}/cancel", as_=full)
    else:
        [leased] = pull(api, full)
        if state == "completed":
            api.post(f"/jobs/{job['id']}/ack", {"lease_id": leased["lease_id"]}, as_=full)
    body = {"priority": 9, "run_at": _iso(timezone.now() + timedelta(hours=1))}
    assert api.patch(f"/jobs/{job['id']}", body, as_=full).status == 409
    stored = Job.objects.get(id=job["id"])
    assert (stored.state, stored.priority) == (state, 1)


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"priority": "high"}, "/priority"),
        ({"priority": 1.5}, "/priority"),
        ({"priority": 10_000_000}, "/priority"),
        ({"run_at": "tomorrow"}, "/run_at"),
        ({"run_at": 12}, "/run_at"),
        ({"run_at": "2999-01-01T00:00:00Z"}, "/run_at"),
        ({"priority": 1, "delay": 5}, "/delay"),
    ],
)
def test_bad_priority_or_run_at_is_a_400_naming_the_field(
    api: Api, full: str, body: dict[str, object], path: str
) -> None:
    job = push(api, full, priority=1)
    call = api.patch(f"/jobs/{job['id']}", body, as_=full)
    assert call.status == 400
    assert path in [error["path"] for error in call.body["errors"]]
    stored = Job.objects.get(id=job["id"])
    assert (stored.priority, stored.run_at.isoformat()) == (1, job["run_at"].replace("Z", "+00:00"))


def test_a_delayed_high_priority_job_never_blocks_ready_lower_priority_ones(
    api: Api, full: str
) -> None:
    push(api, full, priority=100, delay=60_000)
    ready = push(api, full, priority=0)
    # count=1: a claim that took the top one and then dropped delayed jobs would fail.
    assert [job["id"] for job in pull(api, full, count=1)] == [ready["id"]]


def test_getjobs_filters_delayed_and_waiting_apart(api: Api, full: str) -> None:
    snoozed = push(api, full)
    [leased] = pull(api, full)
    body = {"lease_id": leased["lease_id"], "delay_ms": 60_000}
    assert api.post(f"/jobs/{snoozed['id']}/snooze", body, as_=full).status == 200
    delayed = push(api, full, delay=60_000)
    ready = push(api, full)

    def listed(state: str) -> list[tuple[str, str]]:
        call = api.get(f"/queues/jobs:q/jobs?state={state}", as_=full)
        assert call.status == 200
        return [(job["id"], job["state"]) for job in call.body["jobs"]]

    assert listed("delayed") == [(snoozed["id"], "delayed"), (delayed["id"], "delayed")]
    assert listed("waiting") == [(ready["id"], "waiting")]
    counts = api.get("/queues/jobs:q", as_=full).body["counts"]
    assert (counts["waiting"], counts["delayed"]) == (1, 2)


def test_run_at_without_an_offset_is_taken_as_utc(api: Api, full: str) -> None:
    job = push(api, full)
    naive = (datetime.now(UTC) + timedelta(hours=2)).replace(tzinfo=None, microsecond=0)
    assert api.patch(f"/jobs/{job['id']}", {"run_at": naive.isoformat()}, as_=full).status == 200
    assert Job.objects.get(id=job["id"]).run_at == naive.replace(tzinfo=UTC)


def test_a_past_run_at_is_ready_now_and_jumps_no_one(api: Api, full: str) -> None:
    """Backdating run_at must not put a job ahead of the jobs that were ready before it."""
    first = push(api, full)
    later = push(api, full, delay=60_000)
    body = {"run_at": "2020-01-01T00:00:00Z"}
    assert api.request("PATCH", f"/jobs/{later['id']}", body, as_=full).status == 200
    assert Job.objects.get(id=later["id"]).run_at > Job.objects.get(id=first["id"]).run_at
    assert [job["id"] for job in pull(api, full, count=2)] == [first["id"], later["id"]]


def test_a_card_number_in_a_promote_reason_is_422_and_changes_nothing(api: Api, full: str) -> None:
    job = push(api, full, delay=60_000)
    call = api.post(f"/jobs/{job['id']}/promote", {"reason": "card 4111 1111 1111 1111"}, as_=full)
    assert call.status == 422
    assert [error["path"] for error in call.body["errors"]] == ["/reason"]
    assert Job.objects.get(id=job["id"]).run_at > timezone.now()
    # Only the refusal is recorded, without the reason.
    [refusal] = AuditEvent.objects.filter(action="promote")
    assert refusal.outcome != "ok"
    trail = str(list(AuditEvent.objects.values_list("details", flat=True)))
    assert "4111 1111 1111 1111" not in trail and "4111111111111111" not in trail
