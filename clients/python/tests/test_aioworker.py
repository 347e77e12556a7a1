"""The asyncio worker against the real server, with the real ``AsyncClient``."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from conftest import Server
from flashq_client import AsyncClient, AsyncWorker, AsyncWorkerJob, Client
from flashq_client.worker import is_async


async def _until(check: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, f"not true within {timeout} s"
        await asyncio.sleep(0.2)


def test_fifty_handlers_at_once_on_one_loop_run_500_jobs_once_each(
    server: Server, client: Client, queue: str
) -> None:
    pushed = client.push_batch(queue, [{"data": {"n": n}} for n in range(500)])
    runs: Counter[str] = Counter()
    in_flight = [0, 0]  # now, most at once

    async def handler(job: AsyncWorkerJob) -> dict[str, int]:
        runs[job["id"]] += 1
        in_flight[0] += 1
        in_flight[1] = max(in_flight[1], in_flight[0])
        try:
            await asyncio.sleep(0.2)
        finally:
            in_flight[0] -= 1
        return {"double": job["data"]["n"] * 2}

    async def main() -> AsyncWorker:
        async with server.async_client() as async_client:
            worker = AsyncWorker(async_client, queue, handler, concurrency=50, wait=1)
            running = asyncio.create_task(worker.run())
            await _until(lambda: worker.completed == 500)
            worker.stop()
            await asyncio.wait_for(running, 30)
        return worker

    worker = asyncio.run(main())
    assert set(runs) == {job["id"] for job in pushed}
    assert set(runs.values()) == {1}  # each handled once
    assert in_flight[1] >= 40  # concurrently, not one after another
    assert worker.completed == 500 and worker.failed == 0
    jobs = list(client.get_jobs(queue))
    assert {job["state"] for job in jobs} == {"completed"}
    assert {job["attempts"] for job in jobs} == {1}


def test_an_async_handler_reports_fails_and_is_released_at_shutdown(
    server: Server, client: Client, queue: str
) -> None:
    bad = client.push(queue, {"kind": "bad"}, max_attempts=1)
    slow = client.push(queue, {"kind": "slow"}, max_attempts=1)

    async def handler(job: AsyncWorkerJob) -> str:
        if job["data"]["kind"] == "bad":
            raise KeyError("no such thing")
        job.report(40, "halfway")
        await asyncio.sleep(60)
        return "too late"

    async def main() -> None:
        async with server.async_client() as async_client:
            await _work(async_client)

    async def _work(async_client: AsyncClient) -> None:
        worker = AsyncWorker(
            async_client, queue, handler, concurrency=2, lease=2, wait=0.5
        )  # beats 2/3 s
        running = asyncio.create_task(worker.run())
        await _until(lambda: client.get_job(bad["id"])["state"] == "failed")
        await _until(lambda: client.get_job(slow["id"])["progress_message"] == "halfway")
        await asyncio.sleep(2.5)  # past the 2 s lease: heartbeats keep it and the report
        held = client.get_job(slow["id"])
        assert (held["state"], held["progress"], held["progress_message"]) == (
            "active",
            40,
            "halfway",
        )
        worker.stop()
        await asyncio.wait_for(running, 30)

    asyncio.run(main())
    failed = client.get_job(bad["id"])
    assert (failed["error_code"], failed["error"]) == ("KeyError", "'no such thing'")
    back = client.get_job(slow["id"])
    assert (back["state"], back["attempts"], back["errors"]) == ("waiting", 0, [])


def test_the_cli_runs_a_coroutine_function_on_the_asyncio_worker() -> None:
    async def handler(job: Any) -> None: ...

    class Callable:
        async def __call__(self, job: Any) -> None: ...

    assert is_async(handler) and is_async(Callable())
    assert not is_async(lambda job: None)


def test_a_handler_whose_awaited_future_is_cancelled_fails_its_job(
    server: Server, client: Client, queue: str
) -> None:
    job = client.push(queue, {"kind": "cancelled"}, max_attempts=1)

    async def handler(job: AsyncWorkerJob) -> None:
        future = asyncio.get_running_loop().create_future()
        future.cancel()
        await future  # CancelledError, though nobody cancelled the handler's task

    async def main() -> AsyncWorker:
        async with server.async_client() as async_client:
            worker = AsyncWorker(async_client, queue, handler, wait=0.5)
            running = asyncio.create_task(worker.run())
            await _until(lambda: client.get_job(job["id"])["state"] == "failed")
            worker.stop()
            await asyncio.wait_for(running, 30)
        return worker

    worker = asyncio.run(main())
    assert worker.failed == 1
    assert client.get_job(job["id"])["error_code"] == "CancelledError"
