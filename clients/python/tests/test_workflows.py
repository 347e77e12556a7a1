"""The client's workflow methods against the real server: wait (and push with wait),
depends_on on push and batch push, push_flow, children, and a worker's
``job.children()``."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import Server, _run, running
from flashq_client import Client, Forbidden, Worker, WorkerJob
from flashq_client.calls import producing


def _finish_soon(server: Server, queue: str, result: Any) -> threading.Thread:
    """A thread that pulls one job of ``queue`` (long-polling) and acks it."""

    def work() -> None:
        with server.client() as worker:
            [job] = worker.pull(queue, wait=20)
            worker.ack(job["id"], job["lease_id"], result)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


# -- wait ------------------------------------------------------------------------------


def test_wait_returns_the_job_once_it_has_finished(
    server: Server, client: Client, queue: str
) -> None:
    pushed = client.push(queue, {"n": 1})
    worker = _finish_soon(server, queue, {"sum": 3})
    job = client.wait(pushed["id"])
    worker.join(timeout=30)
    assert (job["finished"], job["state"], job["result"]) == (True, "completed", {"sum": 3})
    assert job["parent"] is None and job["depends_on"] == []


def test_wait_returns_the_job_unfinished_when_the_timeout_runs_out(
    client: Client, queue: str
) -> None:
    pushed = client.push(queue, {"n": 1})
    job = client.wait(pushed["id"], timeout_ms=200)
    assert (job["finished"], job["state"]) == (False, "waiting")
    assert client.wait(pushed["id"], timeout_ms=0)["finished"] is False
    with pytest.raises(ValueError, match="negative"):
        client.wait(pushed["id"], timeout_ms=-1)


class Recording(httpx.BaseTransport):
    """Forwards to gunicorn, keeping each wait's ``timeout_ms``; ``over_cap`` first
    answers are made up: a server holding as many waits as it allows."""

    def __init__(self, *, over_cap: int = 0) -> None:
        self.real = httpx.HTTPTransport()
        self.asked: list[int] = []
        self.over_cap = over_cap

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/wait"):
            return self.real.handle_request(request)
        self.asked.append(int(request.url.params["timeout_ms"]))
        if len(self.asked) <= self.over_cap:
            answer = {"id": "x", "state": "waiting", "finished": False}
            return httpx.Response(200, json=answer, headers={"Retry-After": "1"})
        return self.real.handle_request(request)

    def close(self) -> None:
        self.real.close()


def test_a_wait_longer_than_the_servers_cap_asks_again(
    server: Server, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cap of 400 ms stands for the server's 30 s.
    monkeypatch.setattr(producing, "MAX_JOB_WAIT_MS", 400)
    transport = Recording()
    with server.client(transport=transport) as flashq:
        pushed = flashq.push(queue, {"n": 1})
        job = flashq.wait(pushed["id"], timeout_ms=1000)
    assert job["finished"] is False
    assert len(transport.asked) >= 3 and transport.asked[:2] == [400, 400]
    assert all(0 <= asked <= 400 for asked in transport.asked)


def test_a_wait_answered_at_once_past_the_cap_pauses_then_asks_again(
    server: Server, queue: str
) -> None:
    transport = Recording(over_cap=1)
    with server.client(transport=transport) as flashq:
        pushed = flashq.push(queue, {"n": 1})
        worker = _finish_soon(server, queue, 7)
        job = flashq.wait(pushed["id"], timeout_ms=20_000)
        worker.join(timeout=30)
    assert (job["finished"], job["result"]) == (True, 7)
    assert len(transport.asked) >= 2


def test_push_with_wait_returns_the_finished_job(
    server: Server, client: Client, queue: str
) -> None:
    worker = _finish_soon(server, queue, "done")
    job = client.push(queue, {"n": 1}, wait=True, wait_timeout_ms=20_000)
    worker.join(timeout=30)
    assert (job["finished"], job["state"], job["result"], job["created"]) == (
        True,
        "completed",
        "done",
        True,
    )
    pending = client.push(queue, {"n": 2}, wait=True, wait_timeout_ms=100)
    assert (pending["finished"], pending["state"], pending["created"]) == (False, "waiting", True)


# -- depends_on ------------------------------------------------------------------------


def test_push_and_batch_push_take_depends_on(client: Client, queue: str) -> None:
    first = client.push(queue, {"n": 1})
    second = client.push(queue, {"n": 2}, depends_on=[uuid.UUID(first["id"])])
    [third] = client.push_batch(queue, [{"data": {"n": 3}, "depends_on": [first["id"]]}])
    assert second["state"] == third["state"] == "waiting-children"
    assert client.get_job(second["id"])["depends_on"] == [first["id"]]
    [leased] = client.pull(queue)
    assert leased["id"] == first["id"]  # the others are held back
    client.ack(leased["id"], leased["lease_id"])
    assert {job["id"] for job in client.pull(queue, count=5)} == {second["id"], third["id"]}


# -- flows -----------------------------------------------------------------------------


@pytest.fixture
def queues() -> Iterator[tuple[str, str]]:
    tag = uuid.uuid4().hex[:10]
    yield f"flow-{tag}:parent", f"flow-{tag}:child"


def test_a_flow_runs_its_children_then_its_parent_which_reads_them(
    client: Client, queues: tuple[str, str]
) -> None:
    parent_queue, child_queue = queues
    tree = client.push_flow(
        parent_queue,
        {"data": {"report": "q3"}},
        [{"queue": child_queue, "job": {"data": {"n": n}, "delay_ms": 0}} for n in (1, 2, 3)],
    )
    assert (tree["state"], tree["created"], len(tree["children"])) == (
        "waiting-children",
        True,
        3,
    )
    assert [child["queue"] for child in tree["children"]] == [child_queue] * 3

    def parent(job: WorkerJob) -> int:
        return sum(child["result"] for child in job.children())

    children = Worker(client, child_queue, lambda job: job["data"]["n"] * 10, wait=1)
    parents = Worker(client, parent_queue, parent, wait=1)
    with running(children), running(parents):
        done = client.wait(tree["id"], timeout_ms=30_000)
    assert (done["finished"], done["state"], done["result"]) == (True, "completed", 60)
    listed = client.children(tree["id"])
    assert [child["result"] for child in listed] == [10, 20, 30]
    assert all(child["parent"] == tree["id"] for child in map(client.get_job, _ids(listed)))


def _ids(jobs: list[Any]) -> list[str]:
    return [job["id"] for job in jobs]


def test_a_flow_pushed_again_with_its_root_key_returns_the_same_tree(
    client: Client, queues: tuple[str, str]
) -> None:
    parent_queue, child_queue = queues
    children = [{"queue": child_queue, "job": {"data": {"n": 1}}}]
    first = client.push_flow(parent_queue, {"data": {}, "key": "report-q3"}, children)
    again = client.push_flow(parent_queue, {"data": {}, "key": "report-q3"}, children)
    assert again["id"] == first["id"] and (first["created"], again["created"]) == (True, False)
    assert len(list(client.get_jobs(child_queue))) == 1


def test_a_worker_without_getjob_cannot_read_the_children(
    server: Server, client: Client, queues: tuple[str, str]
) -> None:
    parent_queue, child_queue = queues
    tree = client.push_flow(
        parent_queue,
        {"data": {}, "max_attempts": 1},
        [{"queue": child_queue, "job": {"data": {}}}],
        on_child_failure="ignore",
    )
    [child] = client.pull(child_queue)
    client.fail(child["id"], child["lease_id"], "boom", retry=False)
    seen: list[BaseException] = []

    def parent(job: WorkerJob) -> None:
        try:
            job.children()
        except Forbidden as exc:
            seen.append(exc)
            raise

    token = _worker_token(server, parent_queue)
    with Client(server.url, token) as narrow:
        worker = Worker(narrow, parent_queue, parent, wait=1)
        with running(worker):
            done = client.wait(tree["id"], timeout_ms=30_000)
    assert len(seen) == 1
    assert (done["state"], done["error_code"]) == ("failed", "Forbidden")


def _worker_token(server: Server, queue: str) -> str:
    """A token that may work ``queue`` (pull, ack, fail, progress) but not read it."""
    out = _run(
        ["create_token", f"w-{uuid.uuid4().hex[:8]}", "--allow", f"{queue}=pull,ack,fail,progress"],
        server.env,
    )
    return out.strip().splitlines()[-1]
