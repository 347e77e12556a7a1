"""The worker against the real server: in a thread (concurrency, results, failures,
heartbeats, stale piggy-backed acks) and as the CLI in a process (SIGKILL, SIGTERM)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import flashq_client
import pytest
from conftest import Server, running, wait_for
from flashq_client import Client, Job, Worker

#: clients/python: put on the CLI's PYTHONPATH, installed or not.
PACKAGE_ROOT = Path(flashq_client.__file__).resolve().parents[1]

HANDLERS = """
import asyncio
import time


def slow(job):
    time.sleep(job["data"].get("sleep", 0))
    return {"n": job["data"].get("n"), "attempt": job["attempts"]}


async def aslow(job):
    job.report(50, "half")
    await asyncio.sleep(job["data"].get("sleep", 0))
    return {"n": job["data"].get("n"), "attempt": job["attempts"], "async": True}
"""


def states(client: Client, queue: str) -> list[str]:
    return [job["state"] for job in client.get_jobs(queue)]


def test_a_worker_runs_jobs_three_at_a_time(client: Client, queue: str) -> None:
    ids = [job["id"] for job in client.push_batch(queue, [{"data": {"n": n}} for n in range(9)])]
    lock = threading.Lock()
    active: list[int] = [0, 0]  # now, most at once

    def handler(job: dict[str, Any]) -> dict[str, int]:
        with lock:
            active[0] += 1
            active[1] = max(active[1], active[0])
        time.sleep(0.3)
        with lock:
            active[0] -= 1
        return {"double": job["data"]["n"] * 2}

    worker = Worker(client, queue, handler, concurrency=3, lease=10, wait=1)
    with running(worker):
        wait_for(lambda: states(client, queue) == ["completed"] * 9)
    assert active[1] == 3
    assert worker.completed == 9
    for n, job_id in enumerate(ids):
        job: Job = client.get_job(job_id)
        assert job["result"] == {"double": n * 2}
        assert job["attempts"] == 1


def test_a_handler_exception_fails_the_job_with_its_class_as_code_and_its_text(
    client: Client, queue: str
) -> None:
    job = client.push(queue, {"n": 1}, max_attempts=1)

    def handler(job: dict[str, Any]) -> None:
        hidden_local = "never sent"  # noqa: F841 - a local a traceback would show
        raise ValueError("bad input " + "x" * 2000)

    worker = Worker(client, queue, handler, wait=1)
    with running(worker):
        wait_for(lambda: client.get_job(job["id"])["state"] == "failed")
    failed = client.get_job(job["id"])
    assert failed["error"] == ("bad input " + "x" * 2000)[:1000]
    assert failed["error_code"] == failed["errors"][0]["code"] == "ValueError"
    assert "never sent" not in failed["error"]
    assert "Traceback" not in failed["error"]
    assert worker.failed == 1


def test_an_exception_class_becomes_a_code_the_server_takes() -> None:
    from flashq_client.worker import error_code

    class Ärger(Exception):  # a name as a handler might choose
        pass

    long = type("E" * 100, (Exception,), {})
    assert error_code(KeyError("x")) == "KeyError"
    assert error_code(Ärger()) == "_rger"
    assert error_code(long()) == "E" * 64


def test_a_result_json_cannot_carry_fails_the_job_and_the_worker_goes_on(
    client: Client, queue: str
) -> None:
    bad = client.push(queue, {"n": 1}, max_attempts=1)
    good = client.push(queue, {"n": 2})

    def handler(job: dict[str, Any]) -> Any:
        return {"ratio": float("nan")} if job["data"]["n"] == 1 else {"ok": True}

    worker = Worker(client, queue, handler, wait=1)
    with running(worker):
        wait_for(lambda: client.get_job(good["id"])["state"] == "completed")
        wait_for(lambda: client.get_job(bad["id"])["state"] == "failed")
    refused = client.get_job(bad["id"])
    assert refused["error"]  # failed with the encoder's text
    assert refused["error_code"] == "ValueError"


def test_acks_go_about_1_mib_of_results_at_a_time() -> None:
    """However many results are waiting, one request carries at most about 1 MiB of them
    (a pull's body must stay under the server's 10 MiB, a batch ack's under 2 MiB); a
    single bigger one goes alone."""
    from flashq_client.worker.core import Ledger, Pending, Settings

    ledger = Ledger(Settings("q"))
    sizes = [600_000, 300_000, 200_000, 2_000_000, 10, 10]
    ledger.acks = [
        Pending({"id": str(n), "lease_id": "l", "result": None}, 0.0, size)
        for n, size in enumerate(sizes)
    ]
    batches = []
    while taken := ledger.take_acks():
        batches.append([int(pending.item["id"]) for pending in taken])
    assert batches == [[0, 1], [2], [3], [4, 5]]


def test_heartbeats_keep_the_lease_of_a_long_job(client: Client, queue: str) -> None:
    job = client.push(queue, {"n": 1})

    def handler(job: dict[str, Any]) -> str:
        time.sleep(3.5)  # longer than the 2 s lease
        return "done"

    worker = Worker(client, queue, handler, lease=2, wait=0.5)  # heartbeat 2/3 s
    with running(worker):
        wait_for(lambda: client.get_job(job["id"])["state"] == "completed")
    done = client.get_job(job["id"])
    assert (done["result"], done["attempts"], done["errors"]) == ("done", 1, [])


def test_a_stale_piggybacked_ack_is_dropped_with_a_warning(
    client: Client, server: Server, queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = client.push_batch(queue, [{"data": {"n": 1}}, {"data": {"n": 2}}])
    # Acks are safe to repeat: the same lease acked twice is no conflict. A job cancelled
    # while the worker holds it is: its lease is void, and the worker's ack is stale.
    other = server.client()

    def handler(job: dict[str, Any]) -> str:
        if job["id"] == first["id"]:
            other.cancel(job["id"])
        return "by the worker"

    worker = Worker(client, queue, handler, concurrency=1, lease=10, wait=1)
    with caplog.at_level(logging.WARNING, logger="flashq_client"), running(worker):
        wait_for(lambda: sorted(states(client, queue)) == ["cancelled", "completed"])
    other.close()
    assert client.get_job(first["id"])["result"] is None
    assert client.get_job(second["id"])["result"] == "by the worker"
    [warning] = [r for r in caplog.records if "refused as stale" in r.getMessage()]
    assert first["id"] in warning.getMessage()
    assert "by the worker" not in caplog.text


# -- the command line ------------------------------------------------------------------


@pytest.fixture
def cli(server: Server, tmp_path: Path) -> Iterator[Any]:
    (tmp_path / "handlers.py").write_text(HANDLERS)
    env = server.worker_env()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
    started: list[subprocess.Popen[str]] = []

    def start(queue: str, *args: str, handler: str = "handlers:slow") -> subprocess.Popen[str]:
        process = subprocess.Popen(  # noqa: S603 - our interpreter, our module
            [
                sys.executable,
                "-m",
                "flashq_client.worker",
                handler,
                f"--queue={queue}",
                *args,
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def test_the_cli_works_jobs_and_stops_on_sigterm(cli: Any, client: Client, queue: str) -> None:
    ids = [job["id"] for job in client.push_batch(queue, [{"data": {"n": n}} for n in range(4)])]
    process = cli(queue, "--concurrency", "2", "--wait", "1")
    wait_for(lambda: states(client, queue) == ["completed"] * 4)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=15)
    assert process.returncode == 0, output
    assert "worker stopped: 4 completed, 0 failed" in output
    assert [client.get_job(job_id)["result"]["n"] for job_id in ids] == [0, 1, 2, 3]


def test_the_cli_runs_an_async_handler_on_the_asyncio_worker(
    cli: Any, client: Client, queue: str
) -> None:
    ids = [job["id"] for job in client.push_batch(queue, [{"data": {"n": n}} for n in range(6)])]
    slow = client.push(queue, {"n": 9, "sleep": 60})
    process = cli(
        queue, "--concurrency", "8", "--wait", "1", "--grace", "1", handler="handlers:aslow"
    )
    wait_for(lambda: [client.get_job(job_id)["state"] for job_id in ids] == ["completed"] * 6)
    wait_for(lambda: client.get_job(slow["id"])["progress_message"] == "half")
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=15)
    assert process.returncode == 0, output
    assert time.monotonic() - signalled < 10  # the grace, not the 60 s handler
    assert "AsyncWorker" in output and "worker stopped: 6 completed, 0 failed" in output
    assert [client.get_job(job_id)["result"] for job_id in ids] == [
        {"n": n, "attempt": 1, "async": True} for n in range(6)
    ]
    back = client.get_job(slow["id"])  # released at the stop: the attempt not counted
    assert (back["state"], back["attempts"], back["errors"]) == ("waiting", 0, [])


def test_a_job_of_a_killed_worker_comes_back_after_its_lease(
    cli: Any, client: Client, queue: str
) -> None:
    job = client.push(queue, {"sleep": 60})
    process = cli(queue, "--lease", "2", "--wait", "1")
    wait_for(lambda: client.get_job(job["id"])["state"] == "active")
    lease_end = client.get_job(job["id"])["lease_expires_at"]
    assert lease_end is not None
    process.kill()  # SIGKILL: no goodbye
    process.wait(timeout=10)

    found: list[Any] = []

    def pulled() -> bool:
        found.extend(client.pull(queue, lease=30, wait=1))
        return bool(found)

    wait_for(pulled, timeout=15)
    assert datetime.now(UTC) >= datetime.fromisoformat(lease_end)  # not before it ran out
    [again] = found
    assert (again["id"], again["attempts"]) == (job["id"], 2)
    history = client.get_job(job["id"])["errors"]
    assert [(entry["error"], entry["code"]) for entry in history] == [
        ("lease expired", "lease_expired")
    ]


def test_sigterm_gives_back_a_job_that_outlives_the_grace(
    cli: Any, client: Client, queue: str
) -> None:
    job = client.push(queue, {"sleep": 60})
    process = cli(queue, "--lease", "60", "--grace", "1", "--wait", "1")
    wait_for(lambda: client.get_job(job["id"])["state"] == "active")
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=15)
    assert process.returncode == 0, output
    assert time.monotonic() - signalled < 10  # the grace, not the 60 s lease or handler
    back = client.get_job(job["id"])
    # Released: waiting again at once, the attempt not counted, no failure recorded.
    assert (back["state"], back["attempts"], back["errors"]) == ("waiting", 0, [])
    assert back["lease_expires_at"] is None
    assert "giving it back" in output


def test_stop_releases_a_job_on_its_last_attempt(client: Client, queue: str) -> None:
    """A shutdown used to fail the job (the attempt counted): on its last attempt, that
    was the end of it. Now the job is released, waiting again with attempts 0."""
    job = client.push(queue, {"n": 1}, max_attempts=1)
    started = threading.Event()

    def handler(job: dict[str, Any]) -> str:
        started.set()
        time.sleep(30)
        return "too late"

    worker = Worker(client, queue, handler, lease=30, wait=0.5, grace=0.2)
    with running(worker):
        assert started.wait(15)
    back = client.get_job(job["id"])
    assert (back["state"], back["attempts"], back["errors"]) == ("waiting", 0, [])
    assert worker.failed == 0
