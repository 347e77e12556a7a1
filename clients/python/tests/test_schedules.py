"""The client's schedule methods against the real server: put (create, then replace),
get, list, pause, resume, trigger and delete, and a bad cron as InvalidInput naming
the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from flashq_client import Client, InvalidInput, NotFound


def test_put_get_list_pause_resume_trigger_and_delete(client: Client, queue: str) -> None:
    start = datetime.now(UTC) + timedelta(days=1)
    made = client.put_schedule(
        queue,
        "nightly",
        cron="30 2 * * *",
        timezone="Europe/Berlin",
        data={"userId": "u1", "kind": "digest"},
        priority=3,
        max_attempts=2,
        backoff={"type": "fixed", "delay": 10},
        timeout_ms=60_000,
        tags=["digest"],
        subject="u1",
        start_at=start,
        catch_up="none",
        max_catch_up=5,
    )
    assert (made["name"], made["queue"], made["cron"], made["every_ms"]) == (
        "nightly",
        queue,
        "30 2 * * *",
        None,
    )
    assert (made["timezone"], made["priority"], made["max_attempts"]) == ("Europe/Berlin", 3, 2)
    assert (made["timeout"], made["tags"], made["subject"]) == (60_000, ["digest"], "u1")
    assert (made["catch_up"], made["max_catch_up"], made["paused"]) == ("none", 5, False)
    assert made["next_run_at"] is not None and made["last_job_id"] is None

    replaced = client.put_schedule(queue, "nightly", every_ms=60_000, data={"n": 1})
    assert (replaced["cron"], replaced["every_ms"], replaced["timezone"]) == (None, 60_000, "UTC")
    client.put_schedule(queue, "hourly", every_ms=3_600_000, data={"n": 2})
    assert client.get_schedule(queue, "nightly")["data"] == {"n": 1}
    assert [s["name"] for s in client.list_schedules(queue)] == ["hourly", "nightly"]

    assert client.pause_schedule(queue, "hourly", reason="INC-1")["paused"] is True
    assert client.resume_schedule(queue, "hourly")["paused"] is False
    job = client.trigger_schedule(queue, "hourly", reason="backfill")
    assert job["queue"] == queue
    assert client.get_schedule(queue, "hourly")["last_job_id"] == job["id"]
    assert client.get_job(job["id"])["data"] == {"n": 2}

    client.delete_schedule(queue, "hourly", reason="retired")
    with pytest.raises(NotFound):
        client.get_schedule(queue, "hourly")
    assert [s["name"] for s in client.list_schedules(queue)] == ["nightly"]
    assert client.list_schedules(f"{queue}-none") == []


def test_a_bad_cron_is_invalid_input_naming_the_field(client: Client, queue: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        client.put_schedule(queue, "bad", cron="61 * * * *", data={"n": 1})
    assert caught.value.status == 400
    assert [problem["path"] for problem in caught.value.errors] == ["/cron"]
    assert client.list_schedules(queue) == []
