"""What the worker does when told to stop: SIGTERM ends its retry pauses, the final ack
flush is tried again before it gives up (and says what it could not deliver), and jobs
it holds but will not finish go back with ``release`` (the attempt not counted)."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import Server, running, wait_for
from flashq_client import Client, ConnectionFailed, LeasedJob, Pulled, Worker, WorkerJob
from flashq_client.worker import flows
from flashq_client.worker.core import Ledger, Settings
from test_worker import PACKAGE_ROOT

RETRYING_WORKER = """
import logging, sys
from flashq_client import Client, Worker

logging.basicConfig(level=logging.INFO, stream=sys.stdout)
client = Client(sys.argv[1], "a-token", max_retries=30)  # pauses up to 10 s each
Worker(client, "q", lambda job: None, wait=1, grace=1).run()
"""

RETRYING_ASYNC_WORKER = """
import asyncio, logging, sys
from flashq_client import AsyncClient, AsyncWorker

logging.basicConfig(level=logging.INFO, stream=sys.stdout)

async def handler(job):
    return None

async def main():
    async with AsyncClient(sys.argv[1], "a-token", max_retries=30) as client:
        await AsyncWorker(client, "q", handler, wait=1, grace=1).run()

asyncio.run(main())
"""


@pytest.mark.parametrize(
    "script", [RETRYING_WORKER, RETRYING_ASYNC_WORKER], ids=["threads", "asyncio"]
)
def test_sigterm_ends_the_retry_pauses_of_a_worker_whose_server_is_down(
    tmp_path: Path, script: str
) -> None:
    from tests.processes import free_port

    (tmp_path / "runner.py").write_text(script)
    process = subprocess.Popen(  # noqa: S603 - our interpreter, our script
        [sys.executable, "runner.py", f"http://127.0.0.1:{free_port()}"],  # nobody there
        cwd=tmp_path,
        env={"PYTHONPATH": str(PACKAGE_ROOT), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(4)  # into the client's retries of its first pull (30 of them)
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=1 + 5)  # the grace, and a margin
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert time.monotonic() - signalled < 6
    assert process.returncode == 0, output
    assert "retrying in" in output  # it was in the client's retry schedule
    assert "worker stopped: 0 completed, 0 failed" in output


class FlakyAcks(Client):
    """``ack_batch`` finds no server the first ``failures`` times."""

    def __init__(self, *args: Any, failures: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failures = failures

    def ack_batch(self, acks: Sequence[Mapping[str, Any]]) -> int:
        if self.failures:
            self.failures -= 1
            raise ConnectionFailed("POST jobs/ack failed: ConnectError", code="connection_failed")
        return super().ack_batch(acks)


def _finish_after_stop(flaky: Client, queue: str) -> tuple[Worker, list[str]]:
    """A worker whose one job finishes just after stop(): its ack is left to the final
    flush. Returns the worker and the job's lease id."""
    started = threading.Event()
    leases: list[str] = []

    def handler(job: WorkerJob) -> str:
        leases.append(job["lease_id"])
        started.set()
        time.sleep(0.5)
        return "secret result"

    worker = Worker(flaky, queue, handler, lease=30, wait=0.5, grace=10)
    with running(worker):
        assert started.wait(15)
    return worker, leases


def test_the_final_ack_flush_is_tried_again_until_the_server_answers(
    client: Client, server: Server, queue: str
) -> None:
    job = client.push(queue, {"n": 1})
    flaky = FlakyAcks(server.url, server.token, failures=2)
    with flaky:
        worker, _ = _finish_after_stop(flaky, queue)
    done = client.get_job(job["id"])
    assert (done["state"], done["result"], done["attempts"]) == ("completed", "secret result", 1)
    assert worker.completed == 1


def test_acks_the_final_flush_cannot_deliver_are_named_in_an_error(
    client: Client,
    server: Server,
    queue: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(flows, "FINAL_FLUSH_PAUSES", (0.1, 0.1))
    job = client.push(queue, {"n": 1})
    down = FlakyAcks(server.url, server.token, failures=100)
    with caplog.at_level(logging.WARNING, logger="flashq_client"), down:
        worker, [lease_id] = _finish_after_stop(down, queue)
    assert down.failures == 100 - 3  # tried three times
    [error] = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert job["id"] in error.getMessage() and lease_id in error.getMessage()
    assert "secret result" not in caplog.text
    assert worker.completed == 0
    assert client.get_job(job["id"])["state"] == "active"  # back after its lease


class SeesPulls(Client):
    """Says when a pull is under way, and keeps what pulls brought."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pulling = threading.Event()
        self.brought: list[LeasedJob] = []

    def pull(self, queue: str, **options: Any) -> Pulled:
        self.pulling.set()
        jobs = super().pull(queue, **options)
        self.brought.extend(jobs)
        return jobs


def test_a_job_a_pull_brings_after_the_stop_is_released(
    client: Client, server: Server, queue: str
) -> None:
    ran: list[str] = []
    sees = SeesPulls(server.url, server.token)
    with sees:
        worker = Worker(sees, queue, lambda job: ran.append(job["id"]), wait=3)
        with running(worker):
            assert sees.pulling.wait(15)
            time.sleep(0.3)  # the pull is long-polling at the server
            worker.stop()
            job = client.push(queue, {"n": 1})
            wait_for(lambda: bool(sees.brought), timeout=10)
    assert [pulled["id"] for pulled in sees.brought] == [job["id"]]
    assert ran == []
    back = client.get_job(job["id"])
    assert (back["state"], back["attempts"], back["errors"]) == ("waiting", 0, [])


def test_a_job_pulled_but_not_started_at_the_stop_is_given_back() -> None:
    ledger = Ledger(Settings("q", concurrency=2))
    job: Any = {"id": "j1", "lease_id": "l1", "progress": 0}
    run, back = ledger.admit([job], 0.0)
    assert (run, back) == ([job], [])
    ledger.stopping = True
    assert ledger.begin(("j1", "l1")) == "give back"
    assert ledger.begin(("j1", "l1")) == "gone"  # given back once
    assert ledger.abandon() == []


def test_workers_sharing_a_client_give_it_back_its_own_stop_event(
    server: Server, queue: str
) -> None:
    with server.client() as shared:
        own = shared.stop
        first = Worker(shared, queue, lambda job: None, wait=0.5)
        second = Worker(shared, f"{queue}-2", lambda job: None, wait=0.5)
        with running(first):
            wait_for(lambda: shared.stop is not own)  # the first worker holds it
            held = shared.stop
            with running(second):
                assert shared.stop is held  # the second leaves it alone
        assert shared.stop is own and not own.is_set()
        assert shared.me()["family"]  # the client still works
