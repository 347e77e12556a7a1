"""``bench/run.py``'s line "single push (producer, 16 threads)" (issue 24): one client
process, the real ``flashq_client.Client`` in producer mode (``producer=True``, its
defaults ``linger_ms=2``, ``max_batch=500``), 16 threads each pushing single jobs
(``client.push``) in a closed loop to one queue, for as long as the plain single push
ran. A push counts once it returned its job (its batch committed). Reported: the
acknowledged jobs per second, p50/p99 per push, and the batch requests they went in.
Targets: >= 5,000 jobs/s and p99 <= 50 ms."""

from __future__ import annotations

import itertools
import sys
import threading
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from bench.run import ROOT, Figure, Server, Tally, measure, timed

# The checkout's client, not whatever version is installed.
sys.path.insert(0, str(ROOT / "clients" / "python"))
from flashq_client import Client as FlashqClient
from flashq_client import FlashqError

PRODUCER = "single push (producer, 16 threads)"
PRODUCER_QUEUE = "bench-producer"
PRODUCER_THREADS = 16
PRODUCER_RATE_TARGET = 5000.0  # acknowledged jobs/s
PRODUCER_P99_TARGET_MS = 50.0


class _Counting(httpx.HTTPTransport):
    """Counts the batch requests and the jobs in them (read from the answers)."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.batches = 0
        self.other = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            if request.url.path.endswith("/jobs/batch"):
                self.batches += 1
            elif request.url.path.endswith("/jobs"):
                self.other += 1
        return super().handle_request(request)


@dataclass(frozen=True)
class ProducerFigure:
    figure: Figure
    batch_requests: int
    single_requests: int
    seconds_asked: float

    @property
    def jobs_per_batch(self) -> float:
        return self.figure.done / self.batch_requests if self.batch_requests else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            **asdict(self.figure),
            "rate": round(self.figure.rate, 1),
            "batch_requests": self.batch_requests,
            "single_requests": self.single_requests,
            "jobs_per_batch": round(self.jobs_per_batch, 1),
            "seconds_asked": round(self.seconds_asked, 2),
        }


def http_producer(server: Server, seconds: float) -> ProducerFigure:
    """16 threads push single jobs through one producer-mode client for ``seconds``."""
    transport = _Counting()
    url = f"http://127.0.0.1:{server.port}"
    counter = itertools.count()
    with FlashqClient(url, server.token, transport=transport, producer=True) as flashq:

        def work(tally: Tally) -> None:
            tally.start()
            while tally.open():
                n = next(counter)
                try:
                    _, took = timed(flashq.push, PRODUCER_QUEUE, {"userId": "u1", "n": n})
                except FlashqError as error:
                    tally.fail(f"push -> {error}")
                    continue
                tally.add(done=1, seconds=took)

        figure = measure("jobs/s", PRODUCER_THREADS, seconds, work)
    return ProducerFigure(figure, transport.batches, transport.other, seconds)


def render_producer(producer: ProducerFigure, single: Figure) -> str:
    figure = producer.figure
    return (
        f"{PRODUCER}: {figure.done} jobs in {figure.seconds:.2f} s = {figure.rate:.0f} "
        f"acknowledged jobs/s, p50 {figure.p50_ms:.1f} ms, p99 {figure.p99_ms:.1f} ms, "
        f"{figure.errors} failed, in {producer.batch_requests} batch requests "
        f"({producer.jobs_per_batch:.1f} jobs each)\n"
        f"{'single push':<{len(PRODUCER)}}: {single.done} jobs in {single.seconds:.2f} s = "
        f"{single.rate:.0f} jobs/s, p50 {single.p50_ms:.1f} ms, p99 {single.p99_ms:.1f} ms"
    )
