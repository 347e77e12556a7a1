"""The worker keeps its leases against the real server: heartbeats on a thread of their
own, jobs in hand keyed by (id, lease), and a handler's progress kept by heartbeats."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from conftest import Server, running, wait_for
from flashq_client import Client, Worker, WorkerJob


class SlowFirstFlush(Client):
    """The first ``ack_batch`` blocks ``block`` seconds (longer than the lease), as a
    retrying or stuck ack flush would."""

    def __init__(self, *args: Any, block: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.block = block
        self.blocked = threading.Event()

    def ack_batch(self, acks: Sequence[Mapping[str, Any]]) -> int:
        if not self.blocked.is_set():
            self.blocked.set()
            time.sleep(self.block)
        return super().ack_batch(acks)


def test_a_slow_ack_flush_does_not_hold_back_heartbeats(
    client: Client, server: Server, queue: str
) -> None:
    """A quick job's ack waits for the long-polling pull, so it is flushed alone, and
    that flush hangs for longer than the lease; the long job's heartbeats go on meanwhile
    (they used to share the flush's thread), so its lease holds and it completes on its
    first attempt."""
    long = client.push(queue, {"sleep": 4})
    client.push(queue, {"sleep": 0.3})
    slow = SlowFirstFlush(server.url, server.token, block=2.5)

    def handler(job: WorkerJob) -> str:
        time.sleep(job["data"]["sleep"])
        return "done"

    worker = Worker(slow, queue, handler, concurrency=3, lease=2, wait=3)  # beats 2/3 s
    with slow, running(worker):
        wait_for(lambda: client.get_job(long["id"])["state"] == "completed", timeout=30)
    assert slow.blocked.is_set()  # the flush did hang
    done = client.get_job(long["id"])
    assert (done["result"], done["attempts"], done["errors"]) == ("done", 1, [])


def test_a_job_pulled_again_by_the_same_worker_is_a_second_job_in_hand(
    client: Client, queue: str
) -> None:
    """The first run outlives its lease (no heartbeat in time), the same worker pulls
    the job again, and the first run finishes first. Keyed by job id, the first run's
    end took the second's place (its ack was stale, the second's result was dropped and
    the job ran a third time); keyed by (id, lease), the second run completes it."""
    job = client.push(queue, {"n": 1})
    second_started, first_returned = threading.Event(), threading.Event()

    def handler(held: WorkerJob) -> dict[str, int]:
        if held["attempts"] == 1:
            second_started.wait(20)
            first_returned.set()
        elif held["attempts"] == 2:
            second_started.set()
            first_returned.wait(20)
            time.sleep(0.3)  # the first run's end is settled meanwhile
        return {"attempt": held["attempts"]}

    worker = Worker(client, queue, handler, concurrency=2, lease=2, heartbeat=60, wait=0.5)
    with running(worker):
        wait_for(lambda: client.get_job(job["id"])["state"] == "completed", timeout=30)
    done = client.get_job(job["id"])
    assert (done["result"], done["attempts"]) == ({"attempt": 2}, 2)
    assert [entry["code"] for entry in done["errors"]] == ["lease_expired"]
    assert worker.completed == 1  # the first run's ack was stale, and dropped


def test_heartbeats_keep_what_the_handler_reported(client: Client, queue: str) -> None:
    job = client.push(queue, {"n": 1})
    reported = threading.Event()

    def handler(held: WorkerJob) -> str:
        held.report(40, "halfway")
        reported.set()
        time.sleep(3.5)  # several heartbeats (2/3 s apart)
        return "done"

    def shown() -> tuple[Any, Any]:
        now = client.get_job(job["id"])
        return now["progress"], now["progress_message"]

    worker = Worker(client, queue, handler, lease=2, wait=0.5)
    with running(worker):
        assert reported.wait(15)
        wait_for(lambda: shown() == (40, "halfway"))  # sent at once, not at the next beat
        lease_end = client.get_job(job["id"])["lease_expires_at"]
        time.sleep(1.6)  # two heartbeats at least
        after = client.get_job(job["id"])
        assert (after["progress"], after["progress_message"]) == (40, "halfway")
        assert lease_end is not None and after["lease_expires_at"] is not None
        assert after["lease_expires_at"] > lease_end  # the heartbeats went out
        wait_for(lambda: client.get_job(job["id"])["state"] == "completed")
    assert client.get_job(job["id"])["attempts"] == 1


class BrokenFirstBeats(Client):
    """``progress`` (the heartbeat) fails its first ``failures`` times with an error that
    is not the server's answer, as a bug or a garbled body would."""

    def __init__(self, *args: Any, failures: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failures = failures

    def progress(self, *args: Any, **kwargs: Any) -> Any:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("not an answer")
        return super().progress(*args, **kwargs)


def test_a_heartbeat_that_raises_something_unexpected_does_not_end_the_heartbeats(
    client: Client, server: Server, queue: str
) -> None:
    long = client.push(queue, {"sleep": 5})
    broken = BrokenFirstBeats(server.url, server.token, failures=1)

    def handler(job: WorkerJob) -> str:
        time.sleep(job["data"]["sleep"])
        return "done"

    worker = Worker(broken, queue, handler, lease=3, wait=1)  # beats every 1 s
    with broken, running(worker):
        wait_for(lambda: client.get_job(long["id"])["state"] == "completed", timeout=30)
    assert broken.failures == 0  # the broken beat happened, and the beats went on
    done = client.get_job(long["id"])
    assert (done["result"], done["attempts"], done["errors"]) == ("done", 1, [])
