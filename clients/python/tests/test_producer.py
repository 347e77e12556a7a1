"""Producer mode against the real server: concurrent pushes gathered into batch requests
(``Client(..., producer=True)``, ``AsyncClient`` the same). Every push lands once with
its own id and ``created``; a refused push fails only its caller, with the error a
single push gets; a lost answer is retried without a duplicate; ``linger_ms`` and
``max_batch`` bound the batches; ``close()`` delivers what is gathering. ``submit``
(``Client`` only) returns a future at once: many in flight per thread, the same
answers, ``max_in_flight`` and ``max_pending`` respected, nothing lost or invented at
``close``, ``atexit`` or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import inspect
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import flashq_client
import httpx
import psycopg
import pytest
from conftest import Server, make_token
from flashq_client import (
    AsyncClient,
    Client,
    Conflict,
    FieldKeys,
    Forbidden,
    InvalidInput,
)
from flashq_client.calls.gathering import _named_items
from flashq_client.errors import FlashqError
from test_ack_replay import AnswerDropper

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


class Counting(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Forwards to gunicorn and records each push request: (path, jobs in it). With
    ``too_large`` (n), a batch of more than n jobs is answered 413 as a body over the
    server's cap would be."""

    def __init__(self, too_large: int | None = None) -> None:
        self.sync = httpx.HTTPTransport()
        self.aio = httpx.AsyncHTTPTransport()
        self.too_large = too_large
        self.pushes: list[tuple[str, int]] = []
        self.lock = threading.Lock()
        self.in_flight = 0  # push requests sent and not yet answered (sync side)
        self.most_in_flight = 0

    def _record(self, request: httpx.Request) -> httpx.Response | None:
        path = request.url.path
        if request.method != "POST" or not path.endswith(("/jobs", "/jobs/batch")):
            return None
        body = json.loads(request.content)
        size = len(body["jobs"]) if path.endswith("/batch") else 1
        with self.lock:
            self.pushes.append((path, size))
        if self.too_large is not None and size > self.too_large:
            problem = {"status": 413, "code": "payload_too_large", "detail": "too big"}
            return httpx.Response(413, json=problem)
        return None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        refused = self._record(request)
        if refused is not None:
            return refused
        pushing = request.url.path.endswith(("/jobs", "/jobs/batch"))
        with self.lock:
            self.in_flight += pushing
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            response = self.sync.handle_request(request)
            response.read()
            return response
        finally:
            with self.lock:
                self.in_flight -= pushing

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return self._record(request) or await self.aio.handle_async_request(request)

    def batches(self) -> list[int]:
        assert all(path.endswith("/batch") for path, _ in self.pushes), self.pushes
        return [size for _, size in self.pushes]


def _in_threads(count: int, push: Callable[[int], Any]) -> list[Any]:
    """``push(i)`` in ``count`` threads started together: each one's job or error."""
    results: list[Any] = [None] * count
    start = threading.Barrier(count)

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = push(i)
        except FlashqError as error:
            results[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def _jobs_in(server: Server, queue: str) -> list[tuple[str, Any]]:
    with psycopg.connect(server.env["DATABASE_URL"]) as db:
        rows = db.execute(
            "SELECT j.id::text, j.key FROM queues_job j JOIN queues_queue q ON q.id = j.queue_id "
            "WHERE q.name = %s",
            [queue],
        ).fetchall()
    return [(row[0], row[1]) for row in rows]


def test_sixteen_threads_pushing_land_once_each_with_their_own_ids(
    server: Server, queue: str
) -> None:
    counting = Counting()
    per_thread = 20
    with server.client(transport=counting, producer=True, linger_ms=20) as flashq:

        def pushes(i: int) -> list[Any]:
            return [flashq.push(queue, {"t": i, "n": n}) for n in range(per_thread)]

        results = _in_threads(16, pushes)
    jobs = [job for each in results for job in each]
    assert len(jobs) == 16 * per_thread
    assert all(job["created"] and job["queue"] == queue for job in jobs)
    ids = {job["id"] for job in jobs}
    assert len(ids) == 16 * per_thread
    stored = _jobs_in(server, queue)
    assert sorted(job_id for job_id, _ in stored) == sorted(ids)
    # Gathered: far fewer requests than pushes, every one to the batch route.
    sizes = counting.batches()
    assert sum(sizes) == 16 * per_thread
    assert len(sizes) < 16 * per_thread / 3, sizes


def test_a_refused_push_fails_only_its_caller_with_a_single_pushs_error(
    server: Server, queue: str
) -> None:
    with server.client() as plain:
        plain.set_schema(queue, SCHEMA)
        with pytest.raises(InvalidInput) as single:
            plain.push(queue, {"n": "three"})
    counting = Counting()
    with server.client(transport=counting, producer=True, linger_ms=500) as flashq:
        results = _in_threads(8, lambda i: flashq.push(queue, {"n": "three" if i == 3 else i}))
    refused = results[3]
    assert isinstance(refused, InvalidInput) and refused.status == 422
    assert refused.errors == single.value.errors
    assert refused.errors[0]["path"].startswith("/data")
    assert "/jobs/" not in str(refused)
    good = [job for i, job in enumerate(results) if i != 3]
    assert all(isinstance(job, dict) and job["created"] for job in good), results
    assert len(_jobs_in(server, queue)) == 7
    # One batch of 8 refused, then the 7 others sent again without it.
    assert counting.batches() == [8, 7]


def test_a_push_refused_400_for_its_own_option_fails_only_its_caller(
    server: Server, queue: str
) -> None:
    """A bad option (priority out of range, a tag too long) is a 400 naming the job
    (``/jobs/3/priority``): as a 422, it fails only its own push."""
    with server.client() as plain, pytest.raises(InvalidInput) as single:
        plain.push(queue, {"n": 3}, priority=10**9)
    counting = Counting()
    with server.client(transport=counting, producer=True, linger_ms=500) as flashq:
        results = _in_threads(
            8, lambda i: flashq.push(queue, {"n": i}, priority=10**9 if i == 3 else None)
        )
    refused = results[3]
    assert isinstance(refused, InvalidInput) and refused.status == 400
    assert (
        refused.errors
        == single.value.errors
        == [{"path": "/priority", "message": "must be between -1000000 and 1000000"}]
    )
    good = [job for i, job in enumerate(results) if i != 3]
    assert all(isinstance(job, dict) and job["created"] for job in good), results
    assert len(_jobs_in(server, queue)) == 7
    assert counting.batches() == [8, 7]


def test_a_key_held_by_another_family_fails_only_the_push_that_names_it(
    server: Server, queue: str
) -> None:
    with server.client(token=server.other_token) as other:
        other.push(queue, {"n": 0}, key="theirs")
    with server.client(producer=True, linger_ms=500) as flashq:
        results = _in_threads(
            6, lambda i: flashq.push(queue, {"n": i}, key="theirs" if i == 4 else None)
        )
    assert isinstance(results[4], Conflict) and results[4].code == "key_conflict"
    assert all(isinstance(job, dict) for i, job in enumerate(results) if i != 4), results
    assert len(_jobs_in(server, queue)) == 6  # theirs and our 5


def test_a_repeated_key_returns_the_first_job_with_created_false(
    server: Server, queue: str
) -> None:
    with server.client(producer=True, linger_ms=300) as flashq:
        results = _in_threads(2, lambda i: flashq.push(queue, {"n": i}, key="same"))
        again = flashq.push(queue, {"n": 9}, key="same")
    assert {job["id"] for job in [*results, again]} == {results[0]["id"]}
    assert sorted(job["created"] for job in results) == [False, True]
    assert again["created"] is False


def test_errors_of_the_whole_batch_reach_every_caller(server: Server, queue: str) -> None:
    reader = make_token(server.env, "producer-reader", f"{queue}=getJob")
    with Client(server.url, reader, producer=True, linger_ms=300) as flashq:
        results = _in_threads(4, lambda i: flashq.push(queue, {"n": i}))
    assert all(isinstance(error, Forbidden) for error in results), results
    assert len({id(error) for error in results}) == 4  # each its own exception


def test_a_batch_too_large_as_a_whole_is_split_and_sent_again(server: Server, queue: str) -> None:
    counting = Counting(too_large=3)
    with server.client(transport=counting, producer=True, linger_ms=500) as flashq:
        results = _in_threads(8, lambda i: flashq.push(queue, {"n": i}))
    assert all(isinstance(job, dict) and job["created"] for job in results), results
    assert counting.batches() == [8, 4, 2, 2, 4, 2, 2]
    assert len(_jobs_in(server, queue)) == 8


def test_a_batch_whose_answer_was_lost_is_sent_again_and_lands_once(
    server: Server, queue: str
) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    dropper = AnswerDropper((host, int(port)), b"/jobs/batch HTTP/1.1")
    producer = Client(dropper.url, server.token, producer=True, linger_ms=300)
    with contextlib.closing(dropper), producer as flashq:
        results = _in_threads(6, lambda i: flashq.push(queue, {"n": i}))
    assert (dropper.seen, dropper.dropped) == (2, 1)
    # The retry found what the first attempt made: the same jobs, created false.
    assert all(isinstance(job, dict) and job["created"] is False for job in results), results
    stored = _jobs_in(server, queue)
    assert sorted(job_id for job_id, _ in stored) == sorted(job["id"] for job in results)


def test_max_batch_sends_a_full_batch_at_once_and_queues_go_apart(
    server: Server, queue: str
) -> None:
    counting = Counting()
    with server.client(transport=counting, producer=True, linger_ms=1000, max_batch=5) as flashq:
        started = time.monotonic()
        results = _in_threads(10, lambda i: flashq.push(queue, {"n": i}))
        elapsed = time.monotonic() - started
        assert all(isinstance(job, dict) for job in results), results
        assert counting.batches() == [5, 5]
        assert elapsed < 0.9  # full batches did not wait out the linger
        counting.pushes.clear()
        results = _in_threads(4, lambda i: flashq.push(f"{queue}-{i % 2}", {"n": i}))
        assert all(isinstance(job, dict) for job in results), results
        assert sorted(counting.pushes) == [
            (f"/api/v1/queues/{queue}-0/jobs/batch", 2),
            (f"/api/v1/queues/{queue}-1/jobs/batch", 2),
        ]


def test_a_lone_push_waits_out_the_linger(server: Server, queue: str) -> None:
    with server.client(producer=True, linger_ms=300) as flashq:
        started = time.monotonic()
        job = flashq.push(queue, {"n": 1})
        assert time.monotonic() - started >= 0.3
        assert job["created"] and flashq.get_job(job["id"])["data"] == {"n": 1}


def test_close_delivers_the_pushes_gathering_and_refuses_new_ones(
    server: Server, queue: str
) -> None:
    flashq = server.client(producer=True, linger_ms=1000)
    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda i=i: results.append(flashq.push(queue, {"n": i})))
        for i in range(5)
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.2)  # every push has joined the batch, which lingers for a second
    started = time.monotonic()
    flashq.close()
    assert time.monotonic() - started < 0.8
    for thread in threads:
        thread.join(timeout=10)
    assert len(results) == 5 and all(job["created"] for job in results)
    assert len(_jobs_in(server, queue)) == 5
    with pytest.raises(RuntimeError, match="closed"):
        flashq.push(queue, {"n": 6})


def test_push_with_wait_and_sealed_fields_work_as_a_single_push(server: Server, queue: str) -> None:
    keys = FieldKeys({"k1": bytes(range(32))})
    with server.client(
        producer=True, linger_ms=5, field_keys=keys, encrypt_fields=["ssn"]
    ) as flashq:
        job = flashq.push(queue, {"ssn": "123-45-6789", "n": 1}, wait=True, wait_timeout_ms=0)
        assert job["created"] is True and job["finished"] is False
    with server.client() as plain:
        stored = plain.get_job(job["id"])["data"]
    assert stored["n"] == 1 and stored["ssn"].startswith("fq1:k1:")


def test_the_async_client_gathers_on_its_loop(server: Server, queue: str) -> None:
    counting = Counting()
    with server.client() as plain:
        plain.set_schema(queue, SCHEMA)

    async def main() -> list[Any]:
        flashq = AsyncClient(
            server.url, server.token, transport=counting, producer=True, linger_ms=50
        )
        async with flashq:
            tasks = [flashq.push(queue, {"n": "bad" if i == 7 else i}) for i in range(40)]
            results = await asyncio.gather(*tasks, return_exceptions=True)
            # aclose delivers what is still gathering, then refuses.
            late = asyncio.ensure_future(flashq.push(queue, {"n": 99}))
            await asyncio.sleep(0)
        assert (await late)["created"]
        with pytest.raises(RuntimeError, match="closed"):
            await flashq.push(queue, {"n": 100})
        return list(results)

    results = asyncio.run(main())
    assert isinstance(results[7], InvalidInput) and results[7].errors[0]["path"] == "/data/n"
    good = [job for i, job in enumerate(results) if i != 7]
    assert all(isinstance(job, dict) and job["created"] for job in good), results
    assert len({job["id"] for job in good}) == 39
    assert len(_jobs_in(server, queue)) == 40
    assert counting.batches() == [40, 39, 1]


# -- submit: futures, several batches in flight ------------------------------------------


def _settled(future: Future[Any]) -> Any:
    """A settled future's job, or its exception."""
    assert future.done()
    return future.exception() or future.result()


def test_submit_from_four_threads_keeps_batches_in_flight_and_lands_each_once(
    server: Server, queue: str
) -> None:
    counting = Counting()
    per_thread = 300
    with server.client(
        transport=counting, producer=True, linger_ms=1, max_batch=50, max_in_flight=3
    ) as flashq:

        def submits(i: int) -> list[Future[Any]]:
            return [flashq.submit(queue, {"t": i, "n": n}) for n in range(per_thread)]

        futures = [future for each in _in_threads(4, submits) for future in each]
        flashq.flush()
        jobs = [_settled(future) for future in futures]
    assert all(isinstance(job, dict) and job["created"] for job in jobs), jobs[:3]
    ids = [job["id"] for job in jobs]
    assert len(set(ids)) == 4 * per_thread
    assert sorted(job_id for job_id, _ in _jobs_in(server, queue)) == sorted(ids)
    sizes = counting.batches()
    assert sum(sizes) == 4 * per_thread and max(sizes) <= 50
    # Several batch requests at once, never more than max_in_flight.
    assert 1 < counting.most_in_flight <= 3


def test_submit_resolves_each_future_with_what_push_returns_or_raises(
    server: Server, queue: str
) -> None:
    with server.client() as plain:
        plain.set_schema(queue, SCHEMA)
        with pytest.raises(InvalidInput) as single:
            plain.push(queue, {"n": "three"})
    with server.client(token=server.other_token) as other:
        other.push(queue, {"n": 0}, key="theirs")
    with server.client(producer=True, linger_ms=300) as flashq:
        futures = [
            flashq.submit(
                queue,
                {"n": "three" if i == 3 else i},
                key="theirs" if i == 5 else f"k{i}",
                priority=i,
            )
            for i in range(8)
        ]
        again = flashq.submit(queue, {"n": 9}, key="k0")
        flashq.flush()
    results = [_settled(future) for future in futures]
    refused = results[3]
    assert isinstance(refused, InvalidInput) and refused.errors == single.value.errors
    assert isinstance(results[5], Conflict) and results[5].code == "key_conflict"
    good = {i: job for i, job in enumerate(results) if i not in (3, 5)}
    assert all(isinstance(job, dict) and job["created"] for job in good.values()), results
    assert [job["priority"] for job in good.values()] == list(good)
    # The same key again: the first job, created false (as push says).
    assert _settled(again)["id"] == good[0]["id"] and _settled(again)["created"] is False
    assert len(_jobs_in(server, queue)) == 7  # theirs and our 6


def test_a_submitted_batch_whose_answer_was_lost_lands_once(server: Server, queue: str) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    dropper = AnswerDropper((host, int(port)), b"/jobs/batch HTTP/1.1")
    producer = Client(dropper.url, server.token, producer=True, linger_ms=300)
    with contextlib.closing(dropper), producer as flashq:
        futures = [flashq.submit(queue, {"n": i}) for i in range(6)]
        jobs = [future.result(timeout=30) for future in futures]
    assert (dropper.seen, dropper.dropped) == (2, 1)
    assert all(job["created"] is False for job in jobs), jobs
    stored = _jobs_in(server, queue)
    assert sorted(job_id for job_id, _ in stored) == sorted(job["id"] for job in jobs)


class Gate(httpx.BaseTransport):
    """Holds every push request until ``opened``; counts the jobs held at once."""

    def __init__(self) -> None:
        self.sync = httpx.HTTPTransport()
        self.opened = threading.Event()
        self.lock = threading.Lock()
        self.held = 0
        self.most_held = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        size = len(json.loads(request.content)["jobs"])
        with self.lock:
            self.held += size
            self.most_held = max(self.most_held, self.held)
        self.opened.wait(30)
        with self.lock:
            self.held -= size
        return self.sync.handle_request(request)


def test_submit_blocks_at_max_pending_until_a_push_is_answered(server: Server, queue: str) -> None:
    gate = Gate()
    flashq = server.client(transport=gate, producer=True, linger_ms=0, max_batch=2, max_pending=5)
    with flashq:
        futures = [flashq.submit(queue, {"n": i}) for i in range(5)]  # none blocks
        sixth: list[Future[Any]] = []
        blocked = threading.Thread(target=lambda: sixth.append(flashq.submit(queue, {"n": 5})))
        blocked.start()
        blocked.join(timeout=0.5)
        assert blocked.is_alive() and not sixth  # the 6th waits for room
        assert not any(future.done() for future in futures)  # none answered yet
        gate.opened.set()
        blocked.join(timeout=30)
        assert len(sixth) == 1
        jobs = [future.result(timeout=30) for future in [*futures, *sixth]]
    assert len({job["id"] for job in jobs}) == 6
    assert gate.most_held <= 5


def test_flush_and_close_settle_every_future_and_stop_the_senders(
    server: Server, queue: str
) -> None:
    before = {thread for thread in threading.enumerate() if thread.name.startswith("flashq-")}
    flashq = server.client(producer=True, linger_ms=1000)
    futures = [flashq.submit(queue, {"n": i}) for i in range(5)]
    started = time.monotonic()
    flashq.flush()  # does not wait out the linger
    assert time.monotonic() - started < 0.8
    assert all(future.done() and future.result()["created"] for future in futures)
    assert not futures[0].cancel()  # a submitted push is sent, never cancelled
    senders = {thread for thread in threading.enumerate() if thread.name.startswith("flashq-")}
    assert senders - before and all(thread.daemon for thread in senders - before)
    late = [flashq.submit(queue, {"n": i}) for i in range(5, 8)]
    flashq.close()
    assert all(future.done() and future.result()["created"] for future in late)
    assert not any(thread.is_alive() for thread in senders - before)
    with pytest.raises(RuntimeError, match="closed"):
        flashq.submit(queue, {"n": 9})
    assert len(_jobs_in(server, queue)) == 8


def test_submit_needs_producer_mode_and_takes_push_s_arguments_but_wait() -> None:
    with Client("http://127.0.0.1:1", "t") as plain, pytest.raises(RuntimeError, match="producer"):
        plain.submit("q", {})
    push = dict(inspect.signature(Client.push).parameters)
    del push["wait"], push["wait_timeout_ms"]
    assert inspect.signature(Client.submit).parameters == push
    assert "submit" not in dir(AsyncClient)  # tasks are its futures (see the README)


AT_EXIT = """
import sys
import flashq_client._producer
from flashq_client import Client

url, token, queue, seconds = sys.argv[1:5]
flashq_client._producer.FLUSH_AT_EXIT_SECONDS = float(seconds)
flashq = Client(url, token, producer=True, linger_ms=1000, max_batch=2, max_in_flight=1)

def report(future):
    error = future.exception()
    print(error.code if error else future.result()["id"], flush=True)

for n in range(5):
    flashq.submit(queue, {"n": n}).add_done_callback(report)
print("submitted", flush=True)
# No close(): the atexit hook sends what is pending.
"""


class Silent:
    """A server that takes connections and requests and never answers."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.held.append(self.listener.accept()[0])

    def close(self) -> None:
        for each in [self.listener, *self.held]:
            each.close()


def _run_script(tmp_path: Path, script: str, *args: str) -> list[str]:
    path = tmp_path / "script.py"
    path.write_text(script)
    env = {**os.environ, "PYTHONPATH": str(Path(flashq_client.__file__).parents[1])}
    done = subprocess.run(  # noqa: S603 - our interpreter, our script
        [sys.executable, str(path), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split()
    assert lines[0] == "submitted"
    return lines[1:]


def test_a_script_that_forgets_close_still_delivers_at_exit(
    server: Server, queue: str, tmp_path: Path
) -> None:
    reported = _run_script(tmp_path, AT_EXIT, server.url, server.token, queue, "30")
    assert len(reported) == 5
    assert sorted(job_id for job_id, _ in _jobs_in(server, queue)) == sorted(reported)


def test_pushes_unanswered_at_exit_fail_and_never_resolve_as_pushed(tmp_path: Path) -> None:
    silent = Silent()
    with contextlib.closing(silent):
        reported = _run_script(tmp_path, AT_EXIT, silent.url, "t", "q", "0.5")
    # The first batch (2) was sent and never answered; the other 3 waited behind it.
    assert sorted(reported) == ["not_sent"] * 3 + ["unanswered"] * 2


# -- without a server --------------------------------------------------------------------


def test_batch_paths_are_rewritten_as_a_single_push_names_them() -> None:
    error = InvalidInput(
        "bad",
        status=422,
        errors=[
            {"path": "/jobs/3/data/x", "message": "m"},
            {"path": "/jobs/0", "message": "whole"},
            {"path": "/jobs/3/key", "message": "k"},
        ],
    )
    assert _named_items(error, 5) == {
        3: [{"path": "/data/x", "message": "m"}, {"path": "/key", "message": "k"}],
        0: [{"path": "", "message": "whole"}],
    }
    # Not every error names a job of the batch: the batch's own error.
    outside = InvalidInput("bad", errors=[{"path": "/jobs/5/data", "message": "m"}])
    assert _named_items(outside, 5) is None
    whole = InvalidInput("bad", errors=[{"path": "/jobs", "message": "m"}])
    assert _named_items(whole, 5) is None
    assert _named_items(InvalidInput("bad"), 5) is None


def test_producer_settings_are_checked_and_flush_is_the_same_on_both() -> None:
    for linger_ms, max_batch in ((-1, 500), (2, 0), (2, 1001)):
        with pytest.raises(ValueError, match=r"linger_ms|max_batch"):
            Client(
                "http://127.0.0.1:1", "t", producer=True, linger_ms=linger_ms, max_batch=max_batch
            )
    assert Client.flush.__doc__ == AsyncClient.flush.__doc__
    assert inspect.signature(Client.flush) == inspect.signature(AsyncClient.flush)
    assert inspect.iscoroutinefunction(AsyncClient.flush)
    with Client("http://127.0.0.1:1", "t") as plain:
        plain.flush()  # not in producer mode: nothing to do


def _batch_answer(request: httpx.Request) -> httpx.Response:
    """What the batch route answers for a batch it stores: each job, created."""
    jobs = json.loads(request.content)["jobs"]
    return httpx.Response(201, json={"jobs": [{"id": job["key"], "created": True} for job in jobs]})


def test_a_push_whose_data_cannot_be_sent_fails_only_its_caller() -> None:
    """A value JSON cannot carry (a datetime, NaN) fails the push that holds it, with
    what a single push raises; the other pushes of its batch are sent and land."""
    unsendable: list[Any] = [datetime.datetime(2026, 1, 1), float("nan")]
    expected = []
    for value in unsendable:
        with Client("http://127.0.0.1:1", "t", transport=httpx.MockTransport(_batch_answer)) as c:
            with pytest.raises((TypeError, ValueError)) as single:
                c.push("q", {"x": value})
            expected.append(type(single.value))
    sent: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(len(json.loads(request.content)["jobs"]))
        return _batch_answer(request)

    transport = httpx.MockTransport(answer)
    with Client("http://127.0.0.1:1", "t", transport=transport, producer=True, linger_ms=300) as c:
        futures = [c.submit("q", {"x": unsendable[i] if i < 2 else i}) for i in range(6)]
        errors = [future.exception(timeout=10) for future in futures]
    assert [type(error) for error in errors[:2]] == expected
    assert errors[2:] == [None] * 4
    assert all(future.result()["created"] for future in futures[2:])
    assert sent == [4]

    async def gathered() -> list[Any]:
        async with AsyncClient(
            "http://127.0.0.1:1", "t", transport=transport, producer=True, linger_ms=300
        ) as flashq:
            pushes = [flashq.push("q", {"x": unsendable[i] if i < 2 else i}) for i in range(6)]
            results: list[Any] = await asyncio.gather(*pushes, return_exceptions=True)
            return results

    sent.clear()
    results = asyncio.run(gathered())
    assert [type(result) for result in results[:2]] == expected
    assert all(result["created"] for result in results[2:]), results
    assert sent == [4]


FORKED = """
import json, os, sys
import httpx
from flashq_client import Client

def answer(request):
    jobs = json.loads(request.content)["jobs"]
    return httpx.Response(201, json={"jobs": [{"id": j["key"], "created": True} for j in jobs]})

flashq = Client("http://127.0.0.1:1", "t", transport=httpx.MockTransport(answer),
                producer=True, linger_ms=1)
flashq.push("q", {"n": 0})  # the sender thread runs: fork() does not copy it
held = flashq.submit("q", {"n": 1})  # may be pending at the fork: the parent's
pid = os.fork()
if pid == 0:
    try:
        print("child", flashq.submit("q", {"n": 2}).result(timeout=5)["created"], flush=True)
        flashq.close()
    except BaseException as error:
        print("child", type(error).__name__, flush=True)
    os._exit(0)
os.waitpid(pid, 0)
print("parent", held.result(timeout=5)["created"], flashq.push("q", {"n": 3})["created"])
flashq.close()
"""


def test_a_forked_child_pushes_with_senders_of_its_own(tmp_path: Path) -> None:
    """fork() copies the producer's state but not its sender threads (nor, perhaps, an
    unlocked lock): the child starts its own, so its pushes are sent, never left
    waiting forever; the parent carries on as before."""
    path = tmp_path / "forked.py"
    path.write_text(FORKED)
    env = {**os.environ, "PYTHONPATH": str(Path(flashq_client.__file__).parents[1])}
    done = subprocess.run(  # noqa: S603 - our interpreter, our script
        [sys.executable, str(path)], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["child True", "parent True True"], done.stdout


PRODUCING = """
import signal, sys, threading
from flashq_client import Client

url, token, queue, mode = sys.argv[1:5]
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
flashq = Client(url, token, producer=True, linger_ms=50)
lock = threading.Lock()

def report(line):
    with lock:
        print(line, flush=True)

def resolved(future, slots):
    slots.release()
    error = future.exception()
    report(f"FAILED:{error.code}" if error else future.result()["id"])

def produce(t):
    slots = threading.Semaphore(32)  # submit: up to 32 in flight a thread
    n = 0
    while not stop.is_set():
        try:
            if mode == "push":
                report(flashq.push(queue, {"t": t, "n": n})["id"])
            else:
                slots.acquire()
                future = flashq.submit(queue, {"t": t, "n": n})
                future.add_done_callback(lambda done: resolved(done, slots))
        except RuntimeError:  # closed
            return
        n += 1

threads = [threading.Thread(target=produce, args=(t,)) for t in range(8)]
for thread in threads:
    thread.start()
print("started", flush=True)
stop.wait()
flashq.close()
for thread in threads:
    thread.join()
"""


@pytest.mark.parametrize("mode", ["push", "submit"])
def test_sigterm_then_close_loses_no_acknowledged_push_and_reports_none_unstored(
    server: Server, queue: str, tmp_path: Path, mode: str
) -> None:
    script = tmp_path / "produce.py"
    script.write_text(PRODUCING)
    env = {**os.environ, "PYTHONPATH": str(Path(flashq_client.__file__).parents[1])}
    process = subprocess.Popen(  # noqa: S603 - our interpreter, our script
        [sys.executable, str(script), server.url, server.token, queue, mode],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "started"
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    reported = out.split()
    assert len(reported) > 8 and len(set(reported)) == len(reported)
    assert not [line for line in reported if line.startswith("FAILED")]
    # Every push reported was stored, and every stored one was reported: the pushes
    # gathering (or, with submit, in flight) when SIGTERM came were delivered by
    # close(), not dropped; every future was settled, none as pushed without its job.
    assert sorted(job_id for job_id, _ in _jobs_in(server, queue)) == sorted(reported)
