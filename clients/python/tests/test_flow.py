"""The client's timing and hand-back methods against the real server: push with timeout
and group, release, snooze, promote, update of priority and run_at, retry_failed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from flashq_client import Client, Conflict


def test_push_takes_a_timeout_and_a_group(client: Client, queue: str) -> None:
    client.push(queue, {"n": 1}, timeout_ms=5000, group="customer-1")
    [job] = client.pull(queue, lease=30)
    assert job["timeout"] == 5000 and job["deadline_at"] is not None
    assert client.get_job(job["id"])["deadline_at"] == job["deadline_at"]


def test_release_and_snooze_do_not_count_the_attempt(client: Client, queue: str) -> None:
    pushed = client.push(queue, {"n": 1}, max_attempts=1)
    [job] = client.pull(queue)
    released = client.release(job["id"], job["lease_id"])
    assert (released["state"], released["attempts"]) == ("waiting", 0)
    [job] = client.pull(queue)
    snoozed = client.snooze(job["id"], job["lease_id"], 60_000)
    assert (snoozed["state"], snoozed["attempts"]) == ("delayed", 0)
    with pytest.raises(Conflict):
        client.release(job["id"], job["lease_id"])  # the lease is gone
    assert client.pull(queue) == []
    promoted = client.promote(pushed["id"], reason="no need to wait")
    assert promoted["state"] == "waiting"
    with pytest.raises(Conflict):
        client.promote(pushed["id"])  # not delayed any more
    assert [again["id"] for again in client.pull(queue)] == [pushed["id"]]


def test_update_priority_and_run_at(client: Client, queue: str) -> None:
    first = client.push(queue, {"n": 1})
    second = client.push(queue, {"n": 2})
    assert client.update(second["id"], priority=9)["priority"] == 9
    later = datetime.now(UTC) + timedelta(hours=1)
    assert client.update(first["id"], run_at=later)["state"] == "delayed"
    assert client.update(first["id"], {"n": 3}, run_at=later.isoformat())["data"] == {"n": 3}
    assert [job["id"] for job in client.pull(queue, count=5)] == [second["id"]]
    with pytest.raises(ValueError, match="at least one"):
        client.update(first["id"])


def test_retry_failed_redrives_the_dead_letters(client: Client, queue: str) -> None:
    ids = []
    for n in range(3):
        ids.append(client.push(queue, {"n": n}, max_attempts=1)["id"])
        [job] = client.pull(queue)
        client.fail(job["id"], job["lease_id"], "boom")
    assert client.retry_failed(queue, until=datetime.now(UTC) - timedelta(hours=1)) == 0
    assert client.retry_failed(queue, since=datetime.now(UTC) - timedelta(hours=1), limit=2) == 2
    assert [client.get_job(job_id)["state"] for job_id in ids] == ["waiting", "waiting", "failed"]
    assert client.retry_failed(queue) == 1
