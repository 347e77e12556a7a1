"""Every client method against the real server, and the errors it raises."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from conftest import Server
from flashq_client import (
    Client,
    Conflict,
    FlashqError,
    InvalidInput,
    NotFound,
    Unauthorized,
)


def test_push_with_every_option_and_get_job(client: Client, queue: str) -> None:
    pushed = client.push(
        queue,
        {"userId": "u1", "to": "a@example.com"},
        priority=5,
        delay_ms=60_000,
        max_attempts=2,
        backoff={"type": "fixed", "delay": 10},
        ttl_ms=3_600_000,
        key="welcome-u1",
        subject="u1",
        tags=["mail", "welcome"],
    )
    assert pushed["created"] is True
    assert pushed["state"] == "delayed"
    assert (pushed["priority"], pushed["max_attempts"], pushed["key"]) == (5, 2, "welcome-u1")

    again = client.push(queue, {"userId": "u1"}, key="welcome-u1")
    assert again["created"] is False
    assert again["id"] == pushed["id"]

    job = client.get_job(pushed["id"])
    assert job["data"] == {"userId": "u1", "to": "a@example.com"}
    assert job["subject"] == "u1"
    assert job["tags"] == ["mail", "welcome"]
    assert job["backoff"]["type"] == "fixed"
    assert job["backoff"]["delay"] == 10
    assert job["expires_at"] is not None

    # Without a key the client makes one, so that a retried push cannot add a job.
    auto = client.push(queue, {"n": 2})
    assert auto["key"] is not None
    assert len(auto["key"]) == 32
    int(auto["key"], 16)


def test_push_batch_and_get_jobs_follows_cursors(client: Client, queue: str) -> None:
    jobs: list[dict[str, Any]] = [{"data": {"n": n}} for n in range(6)]
    jobs.append({"data": {"n": 6}, "key": "mine", "delay_ms": 60_000})
    pushed = client.push_batch(queue, jobs)
    assert [job["created"] for job in pushed] == [True] * 7
    keys = [job["key"] for job in pushed]
    assert keys[-1] == "mine"
    assert len(set(keys)) == 7  # one key each, made by the client

    listed = list(client.get_jobs(queue, page_size=2))
    assert [job["data"]["n"] for job in listed] == list(range(7))
    delayed = list(client.get_jobs(queue, state="delayed"))
    assert [job["id"] for job in delayed] == [pushed[-1]["id"]]
    assert client.push_batch(queue, []) == []


def test_pull_progress_ack_fail_retry_and_piggybacked_acks(client: Client, queue: str) -> None:
    ids = [job["id"] for job in client.push_batch(queue, [{"data": {"n": n}} for n in range(3)])]
    leased = client.pull(queue, count=3, lease=30)
    assert sorted(job["id"] for job in leased) == sorted(ids)
    first, second, third = sorted(leased, key=lambda job: job["data"]["n"])
    assert first["data"] == {"n": 0}

    progressed = client.progress(first["id"], first["lease_id"], 50, "half way")
    assert (progressed["progress"], progressed["progress_message"]) == (50, "half way")
    acked = client.ack(first["id"], first["lease_id"], {"ok": True})
    assert (acked["state"], acked["result"]) == ("completed", {"ok": True})

    failed = client.fail(second["id"], second["lease_id"], "boom", code="E42", retry=False)
    assert (failed["state"], failed["error"], failed["error_code"]) == ("failed", "boom", "E42")
    assert failed["errors"][0]["code"] == "E42"
    assert client.retry(second["id"])["state"] == "waiting"

    assert client.ack_batch([{"id": third["id"], "lease_id": third["lease_id"]}]) == 1
    assert client.get_job(third["id"])["state"] == "completed"
    assert client.ack_batch([]) == 0

    [again] = client.pull(queue, count=5, lease=30)
    assert again["id"] == second["id"]
    item = {"id": again["id"], "lease_id": again["lease_id"], "result": [1, 2]}
    assert client.pull(queue, count=1, ack=[item]) == []
    done = client.get_job(second["id"])
    assert (done["state"], done["result"]) == ("completed", [1, 2])

    # The same acks again (the answer was lost): answered as the first time, and the
    # job is completed once; another lease is a 409 naming the item.
    assert client.pull(queue, count=1, ack=[item]) == []
    assert client.get_job(second["id"]) == done
    with pytest.raises(Conflict) as caught:
        client.pull(queue, count=1, ack=[{**item, "lease_id": str(uuid.uuid4())}])
    assert caught.value.code == "lease_conflict"
    assert caught.value.errors[0]["path"] == "/ack/0/lease_id"


def test_update_cancel_retry_and_clean(client: Client, queue: str) -> None:
    job = client.push(queue, {"v": 1}, delay_ms=60_000)
    assert client.update(job["id"], {"v": 2})["data"] == {"v": 2}
    assert client.cancel(job["id"])["state"] == "cancelled"
    with pytest.raises(Conflict) as caught:
        client.cancel(job["id"])
    assert caught.value.code == "state_conflict"
    assert client.retry(job["id"])["state"] in ("waiting", "delayed")

    done = client.push(queue, {"v": 3})
    leased = client.pull(queue, count=2, lease=30)  # the retried job and this one
    assert {job["id"] for job in leased} == {job["id"], done["id"]}
    client.ack_batch([{"id": item["id"], "lease_id": item["lease_id"]} for item in leased])
    cleaned = client.clean(queue, 0, "completed", limit=10)
    assert cleaned["total"] == 2
    assert cleaned["deleted"] == {queue: {"completed": 2}}
    assert (cleaned["skipped"], cleaned["held"]) == ([], [])
    with pytest.raises(NotFound):
        client.get_job(done["id"])


def test_queue_settings_stats_and_me(client: Client, queue: str) -> None:
    info = client.set_rate_limit(queue, 100, 60_000)
    assert info["rate_limit"] == {"max": 100, "duration_ms": 60_000}
    assert client.remove_rate_limit(queue)["rate_limit"] is None
    assert client.set_concurrency(queue, 5)["concurrency"] == 5
    assert client.remove_concurrency(queue)["concurrency"] is None
    assert client.set_group_concurrency(queue, 3)["group_concurrency"] == 3
    assert client.remove_group_concurrency(queue)["group_concurrency"] == 1
    assert client.pause(queue)["paused"] is True
    client.push(queue, {"n": 1})
    assert client.pull(queue) == []  # paused: nothing handed out
    assert client.resume(queue)["paused"] is False

    schema = {"type": "object", "required": ["to"], "properties": {"to": {"type": "string"}}}
    assert client.set_schema(queue, schema)["schema"] == schema
    with pytest.raises(InvalidInput) as caught:
        client.push(queue, {"n": 2})
    assert caught.value.status == 422
    assert caught.value.errors
    assert client.remove_schema(queue)["schema"] is None

    assert queue in [item["name"] for item in client.list_queues()]
    stats = client.stats(queue)
    assert stats["name"] == queue
    assert stats["counts"]["waiting"] == 1
    me = client.me()
    assert me["name"] == "client-tests"
    assert me["permissions"][0]["pattern"] == "*"

    dry = client.erase("nobody-" + uuid.uuid4().hex)
    assert (dry["executed"], dry["total"]) == (False, 0)


def test_errors_carry_status_code_detail_paths_and_request_id(
    client: Client, server: Server, queue: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        client.push(queue, {"n": 1}, priority=10**9, tags=["x" * 100])
    error = caught.value
    assert (error.status, error.code) == (400, "invalid_input")
    assert error.detail
    assert {problem["path"] for problem in error.errors} >= {"/priority", "/tags/0"}
    assert error.request_id
    assert "/priority" in str(error)

    with pytest.raises(InvalidInput) as caught:
        client.push(queue, {"card": "4111 1111 1111 1111"})
    assert (caught.value.status, caught.value.code) == (422, "card-number-detected")
    assert caught.value.errors[0]["path"] == "/data/card"
    assert "4111" not in str(caught.value)

    with pytest.raises(NotFound) as missing:
        client.get_job(uuid.uuid4())
    assert (missing.value.status, missing.value.code) == (404, "job_not_found")

    client.push(queue, {"n": 1}, key="shared")
    with server.client(token=server.other_token) as other, pytest.raises(Conflict) as held:
        other.push(queue, {"n": 1}, key="shared")
    assert held.value.code == "key_conflict"
    assert isinstance(held.value, FlashqError)


def test_a_bad_token_is_unauthorized_and_never_shown(server: Server) -> None:
    token = "fq_not_a_real_token_" + uuid.uuid4().hex
    with Client(server.url, token, max_retries=0) as bad:
        assert token not in repr(bad)
        with pytest.raises(Unauthorized) as caught:
            bad.me()
    error = caught.value
    assert (error.status, error.code) == (401, "unauthenticated")
    for text in (str(error), repr(error), repr(error.__cause__), repr(error.__context__)):
        assert token not in text
