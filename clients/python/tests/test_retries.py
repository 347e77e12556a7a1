"""Retries against the real server: a transport in front of gunicorn answers the first
attempt itself (or loses the server's answer), the retry reaches gunicorn, and the
client-made idempotency key keeps it to one job."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from conftest import Server
from flashq_client import Client, ConnectionFailed, Unavailable

Interfere = Callable[[httpx.Request, int], httpx.Response | None]


class Flaky(httpx.BaseTransport):
    """Forwards to gunicorn; ``interfere(request, n)`` may answer the n-th matching
    request itself (None: forward it)."""

    def __init__(self, path_suffix: str, interfere: Interfere, *, after: bool = False) -> None:
        self.real = httpx.HTTPTransport()
        self.path_suffix = path_suffix
        self.interfere = interfere
        self.after = after  # forward first, then replace the answer
        self.seen: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST" or not request.url.path.endswith(self.path_suffix):
            return self.real.handle_request(request)
        self.seen.append(request)
        n = len(self.seen)
        if self.after:
            response = self.real.handle_request(request)
            response.read()
            response.close()
            return self.interfere(request, n) or response
        return self.interfere(request, n) or self.real.handle_request(request)

    def close(self) -> None:
        self.real.close()


def _unavailable(status: int) -> httpx.Response:
    return httpx.Response(
        status,
        json={"type": "x", "title": "t", "status": status, "detail": "d", "code": "unavailable"},
    )


def _keys(transport: Flaky) -> list[object]:
    return [json.loads(request.content).get("key") for request in transport.seen]


def test_a_push_answered_503_then_201_makes_one_job(server: Server, queue: str) -> None:
    transport = Flaky("/jobs", lambda request, n: _unavailable(503) if n == 1 else None)
    with server.client(transport=transport) as flashq:
        pushed = flashq.push(queue, {"n": 1})
        jobs = list(flashq.get_jobs(queue))
    assert len(transport.seen) == 2
    first, second = _keys(transport)
    assert isinstance(first, str)
    assert first == second == pushed["key"]
    assert pushed["created"] is True
    assert [job["id"] for job in jobs] == [pushed["id"]]


def test_a_push_whose_answer_was_lost_is_found_again(server: Server, queue: str) -> None:
    # The first attempt reaches gunicorn and creates the job; its answer becomes a 502.
    transport = Flaky("/jobs", lambda request, n: _unavailable(502) if n == 1 else None, after=True)
    with server.client(transport=transport) as flashq:
        pushed = flashq.push(queue, {"n": 1})
        jobs = list(flashq.get_jobs(queue))
    assert len(transport.seen) == 2
    assert pushed["created"] is False  # the retry found the job the first attempt made
    assert [job["id"] for job in jobs] == [pushed["id"]]


def test_a_batch_push_is_retried_without_duplicates(server: Server, queue: str) -> None:
    transport = Flaky(
        "/jobs/batch", lambda request, n: _unavailable(504) if n == 1 else None, after=True
    )
    with server.client(transport=transport) as flashq:
        pushed = flashq.push_batch(queue, [{"data": {"n": n}} for n in range(5)])
        jobs = list(flashq.get_jobs(queue))
    assert len(transport.seen) == 2
    first, second = (json.loads(r.content)["jobs"] for r in transport.seen)
    assert [job["key"] for job in first] == [job["key"] for job in second]
    assert len({job["key"] for job in first}) == 5
    assert [job["created"] for job in pushed] == [False] * 5
    assert sorted(job["id"] for job in jobs) == sorted(job["id"] for job in pushed)


def test_an_ack_is_repeated_after_a_lost_answer_and_completes_once(
    server: Server, queue: str
) -> None:
    # Every answer to the ack is lost (a 502 in its place): the client sends it again,
    # as an ack is safe to repeat, and the job is completed once.
    transport = Flaky("/ack", lambda request, n: _unavailable(502), after=True)
    with server.client(transport=transport, max_retries=1) as flashq:
        flashq.push(queue, {"n": 1})
        [job] = flashq.pull(queue, lease=30)
        with pytest.raises(Unavailable):
            flashq.ack(job["id"], job["lease_id"], {"r": 1})
    assert len(transport.seen) == 2
    with server.client() as flashq:
        done = flashq.get_job(job["id"])
    assert (done["state"], done["result"]) == ("completed", {"r": 1})


def test_a_connection_refused_is_retried_then_reported(server: Server) -> None:
    flashq = Client("http://127.0.0.1:9", server.token, max_retries=1)
    with flashq, pytest.raises(ConnectionFailed) as caught:
        flashq.me()
    assert "after 2 attempt(s)" in str(caught.value)
    assert server.token not in str(caught.value)


def test_a_progress_report_whose_answer_was_lost_is_sent_again_and_holds_once(
    server: Server, queue: str
) -> None:
    """``progress`` sets absolute values and extends the lease by its length: sending it
    again after a lost answer leaves the job as one report would, so the client does."""
    transport = Flaky(
        "/progress", lambda request, n: _unavailable(502) if n == 1 else None, after=True
    )
    with server.client(transport=transport) as flashq:
        flashq.push(queue, {"n": 1})
        [job] = flashq.pull(queue, lease=30)
        reported = flashq.progress(job["id"], job["lease_id"], 40, "halfway")
    assert len(transport.seen) == 2
    assert [json.loads(r.content) for r in transport.seen] == [
        {"lease_id": job["lease_id"], "progress": 40, "message": "halfway"}
    ] * 2
    assert reported["progress"] == 40 and reported["state"] == "active"
    with server.client() as flashq:
        now = flashq.get_job(job["id"])
    assert now["progress"] == 40 and now["state"] == "active"
