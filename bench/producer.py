"""``bench/run.py``'s producer lines (issue 24): one client process, the real
``flashq_client.Client`` in producer mode (``producer=True``, its defaults
``linger_ms=2``, ``max_batch=500``, ``max_in_flight=4``), 16 threads pushing single
jobs to one queue, each for as long as the plain single push ran:

- "single push (producer, 16 threads)": each thread calls the blocking ``push`` in a
  closed loop, so at most 16 pushes are in flight;
- "submit (producer, 16 threads x K)": each thread keeps up to ``SUBMIT_WINDOW`` (K)
  pushes in flight with ``submit``, taking a slot back when a future resolves.

A push counts once its job came back (its batch committed): latency is from the call
(``push`` or ``submit``) to the return or the future's resolution. Reported:
acknowledged jobs per second, p50/p99 per push, and the batch requests they went in.
The targets (>= 5,000 jobs/s and p99 <= 50 ms) are the submit line's.

K is chosen by Little's law: jobs in flight = rate x latency, so 16 x K pushes in flight
at 5,000 jobs/s wait 16 x K / 5,000 s on average; K = 8 (128 in flight, about 26 ms)
leaves room under the 50 ms p99, where K = 64 (1,024 in flight) would make every push
wait about 200 ms however fast the server is."""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from bench.run import ROOT, Figure, Server, Tally, measure, timed

# The checkout's client, not whatever version is installed.
sys.path.insert(0, str(ROOT / "clients" / "python"))
from flashq_client import Client as FlashqClient
from flashq_client import FlashqError

PRODUCER = "single push (producer, 16 threads)"
SUBMIT_WINDOW = 8  # K: the pushes each thread keeps in flight with submit
SUBMIT = f"submit (producer, 16 threads x {SUBMIT_WINDOW})"
PRODUCER_QUEUE = "bench-producer"
PRODUCER_THREADS = 16
PRODUCER_RATE_TARGET = 5000.0  # acknowledged jobs/s
PRODUCER_P99_TARGET_MS = 50.0


class _Counting(httpx.HTTPTransport):
    """Counts the batch requests and the single pushes."""

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


@dataclass(frozen=True)
class ProducerRun:
    """Both producer lines: blocking ``push``, and ``submit`` with K in flight."""

    blocking: ProducerFigure
    submitted: ProducerFigure

    def as_json(self) -> dict[str, Any]:
        return {
            "threads": PRODUCER_THREADS,
            "submit_window": SUBMIT_WINDOW,
            "push": self.blocking.as_json(),
            "submit": self.submitted.as_json(),
        }


def _blocking_work(flashq: FlashqClient, counter: itertools.count[int]) -> Any:
    def work(tally: Tally) -> None:
        tally.start()
        while tally.open():
            try:
                _, took = timed(flashq.push, PRODUCER_QUEUE, {"userId": "u1", "n": next(counter)})
            except FlashqError as error:
                tally.fail(f"push -> {error}")
                continue
            tally.add(done=1, seconds=took)

    return work


def _submit_work(flashq: FlashqClient, counter: itertools.count[int], window: int) -> Any:
    def work(tally: Tally) -> None:
        slots = threading.Semaphore(window)

        def resolver(started: float) -> Callable[[Future[Any]], None]:
            def resolved(future: Future[Any]) -> None:
                took = time.perf_counter() - started
                slots.release()
                error = future.exception()
                if error is None:
                    tally.add(done=1, seconds=took)
                else:
                    tally.fail(f"submit -> {error}")

            return resolved

        tally.start()
        while tally.open():
            slots.acquire()
            started = time.perf_counter()
            future = flashq.submit(PRODUCER_QUEUE, {"userId": "u1", "n": next(counter)})
            future.add_done_callback(resolver(started))
        for _ in range(window):  # the pushes still in flight count too
            slots.acquire()

    return work


def http_producer(server: Server, seconds: float) -> ProducerRun:
    """16 threads push single jobs through one producer-mode client for ``seconds``,
    with ``push``, then with ``submit`` (each on a client of its own)."""
    url = f"http://127.0.0.1:{server.port}"
    counter = itertools.count()
    figures = []
    for name in ("push", "submit"):
        transport = _Counting()
        with FlashqClient(url, server.token, transport=transport, producer=True) as flashq:
            if name == "push":
                work = _blocking_work(flashq, counter)
            else:
                work = _submit_work(flashq, counter, SUBMIT_WINDOW)
            figure = measure("jobs/s", PRODUCER_THREADS, seconds, work)
        figures.append(ProducerFigure(figure, transport.batches, transport.other, seconds))
    return ProducerRun(*figures)


def _line(name: str, producer: ProducerFigure) -> str:
    figure = producer.figure
    return (
        f"{name:<{len(SUBMIT)}}: {figure.done} jobs in {figure.seconds:.2f} s = "
        f"{figure.rate:.0f} acknowledged jobs/s, p50 {figure.p50_ms:.1f} ms, "
        f"p99 {figure.p99_ms:.1f} ms, {figure.errors} failed, in "
        f"{producer.batch_requests} batch requests ({producer.jobs_per_batch:.1f} jobs each)"
    )


def render_producer(run: ProducerRun, single: Figure) -> str:
    return (
        f"{_line(SUBMIT, run.submitted)}\n{_line(PRODUCER, run.blocking)}\n"
        f"{'single push':<{len(SUBMIT)}}: {single.done} jobs in {single.seconds:.2f} s = "
        f"{single.rate:.0f} jobs/s, p50 {single.p50_ms:.1f} ms, p99 {single.p99_ms:.1f} ms"
    )
