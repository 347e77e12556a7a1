"""``bench/run.py --waiters``: what thousands of waiting pulls cost everyone else.

One app server with the deploy's defaults (``gunicorn -c deploy/gunicorn.conf.py``: ASGI
workers, the long-poll caps). In the same run:

1. single pushes of one token, closed loop (``--single-threads`` clients), alone;
2. the same while ``--waiter-count`` pulls (default 2,000) wait on queues that get no
   work, spread over ``--waiter-families`` tokens (the caps are per family and worker);
   each is sent again as soon as its wait (``wait`` 30 s; the first one anything up to
   30 s, so they do not all end together) ends, so all stay open (2,000 waiters come
   back about 67 times a second, each costing its first rounds);
3. with the waiters still open, the wake latency: a pull waits on a queue of its own, a
   push is made to it, and the time from the push's answer (its job committed) to the
   pull's answer is taken, ``--wake-probes`` times.

Targets (issue 21): push p99 under 50 ms and its rate within 10 % of run 1; wake p99
under 50 ms. The waiters run in a process of their own (bare asyncio HTTP/1.1, one
keep-alive connection each), so the measured client shares no GIL with them."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import queue
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.run import HOST, Client, Figure, Server, http_single_push, manage, percentile

WAIT_SECONDS = 30
IDLE_QUEUES = 50
PUSH_P99_TARGET_MS = 50.0
RATE_WITHIN = 0.10
WAKE_P99_TARGET_MS = 50.0


@dataclass(frozen=True)
class WaitersConfig:
    count: int
    families: int
    probes: int
    together: bool = False  # all first waits 30 s: none comes back while measuring


def family_tokens(env: dict[str, str], families: int) -> list[str]:
    """One pull-only token per family (each its own family for the caps)."""
    tokens = []
    for index in range(families):
        out = manage(env, "create_token", f"waiter-{index}", "--allow", "idle-*=pull")
        tokens.append(out.strip().splitlines()[-1].strip())
    return tokens


class Waiters:
    """``count`` pulls held open by a process of their own (so that they share no GIL
    with the measured client), each on a keep-alive connection, as a worker's are."""

    def __init__(
        self, port: int, tokens: list[str], count: int, together: bool, wait: float = WAIT_SECONDS
    ) -> None:
        self.count = count
        context = multiprocessing.get_context("spawn")
        self._open = context.Value("i", 0)
        self._answered = context.Value("i", 0)
        self._errors = context.Queue()
        self._stop = context.Event()
        self.process = context.Process(
            target=hold_pulls,
            args=(port, tokens, count, together, self._open, self._answered),
            kwargs={"errors": self._errors, "stop": self._stop, "wait_seconds": wait},
            daemon=True,
        )
        self.errors: list[str] = []

    @property
    def open(self) -> int:
        return int(self._open.value)

    @property
    def answered(self) -> int:
        return int(self._answered.value)

    def __enter__(self) -> Waiters:
        self.process.start()
        deadline = time.monotonic() + 120
        while self.open < self.count:
            self._drain_errors()
            if time.monotonic() > deadline or len(self.errors) > 20 or not self.process.is_alive():
                raise SystemExit(f"waiters did not open: {self.open} open, {self.errors[:3]}")
            time.sleep(0.2)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.process.join(timeout=WAIT_SECONDS + 30)
        if self.process.is_alive():
            self.process.kill()
        self._drain_errors()

    def _drain_errors(self) -> None:
        while True:
            try:
                self.errors.append(self._errors.get_nowait())
            except queue.Empty:
                return


def hold_pulls(
    port: int,
    tokens: list[str],
    count: int,
    together: bool,
    opened: Any,
    answered: Any,
    *,
    errors: Any,
    stop: Any,
    wait_seconds: float,
) -> None:
    """The waiters' process: ``count`` connections, each sending its pull again as
    soon as the last one is answered, until ``stop`` is set."""

    async def hold(index: int) -> None:
        token = tokens[index % len(tokens)]
        path = f"/api/v1/queues/idle-{index % IDLE_QUEUES}/pull"
        # The first wait is anything up to 30 s, so that the waits do not all end (and
        # come back) together: as workers' long polls, each starts when its last ended.
        wait = wait_seconds if together else random.uniform(1, wait_seconds)
        first = True
        connection: Connection | None = None
        while True:
            try:
                if connection is None:
                    connection = await Connection.open(port)
                await connection.send(path, token, {"wait": wait})
                if first:
                    with opened.get_lock():
                        opened.value += 1
                    first = False
                wait = wait_seconds
                status, headers, body = await connection.answer()
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                errors.put(repr(exc))
                connection = None
                await asyncio.sleep(1)
                continue
            with answered.get_lock():
                answered.value += 1
            if status != 200 or "retry-after" in headers:
                errors.put(f"{status} {headers} {body[:200]!r}")
            if headers.get("connection") == "close":
                connection.close()
                connection = None

    async def run() -> None:
        tasks = [asyncio.create_task(hold(index)) for index in range(count)]
        while not stop.is_set():
            await asyncio.sleep(0.2)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(run())


class Connection:
    """A bare HTTP/1.1 keep-alive client connection: a JSON POST and its answer. Far
    cheaper than a general client for thousands of idle connections on the machine
    that is being measured."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(HOST, port)
        return cls(reader, writer)

    async def send(self, path: str, token: str, body: Any) -> None:
        payload = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        self.writer.write(head.encode() + payload)
        await self.writer.drain()

    async def answer(self) -> tuple[int, dict[str, str], bytes]:
        status_line = await self.reader.readline()
        if not status_line:
            raise ValueError("the server closed the connection")
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while size := int((await self.reader.readline()).split(b";")[0], 16):
                body += (await self.reader.readexactly(size + 2))[:-2]
            await self.reader.readline()
            return status, headers, body
        return status, headers, await self.reader.readexactly(int(headers.get("content-length", 0)))

    def close(self) -> None:
        self.writer.close()


def _pull_and_time(client: Client, path: str) -> tuple[tuple[int, bytes], float]:
    answer = client.post(path, {"wait": 10})
    return answer, time.perf_counter()


def settle(server: Server, busy: float, limit: float = 60.0) -> float:
    """Wait until the burst of admitting the waiters (each one's first rounds) is over:
    the workers use less than ``busy`` of a core each (waits coming back keep them a
    little busy), at most ``limit`` seconds; how long that took."""
    started = time.monotonic()
    master = Path(f"/proc/{server.pid}/task/{server.pid}/children")
    workers = master.read_text().split()
    hertz = os.sysconf("SC_CLK_TCK")

    def ticks() -> int:
        total = 0
        for pid in workers:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total

    while time.monotonic() - started < limit:
        before = ticks()
        time.sleep(1)
        if ticks() - before < busy * hertz * len(workers):
            break
    return time.monotonic() - started


def wake_latencies(
    server: Server, env: dict[str, str], probes: int, refused: list[int]
) -> list[float]:
    """ms from a push's answer to the answer of the pull waiting on its queue; a probe
    whose pull was refused a wait (its worker at its cap) goes to ``refused``."""
    token = manage(env, "create_token", "prober", "--allow", "wake-*=push,pull")
    token = token.strip().splitlines()[-1].strip()
    latencies: list[float] = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        pusher, puller = Client(server.port, token), Client(server.port, token)
        for probe in range(probes):
            path = f"/api/v1/queues/wake-{probe}"
            waiting = pool.submit(_pull_and_time, puller, f"{path}/pull")
            time.sleep(0.3)  # the pull has found nothing and waits
            status, _ = pusher.post(f"{path}/jobs", {"data": {"n": probe}})
            pushed = time.perf_counter()
            (pull_status, body), answered = waiting.result(timeout=15)
            if status != 201 or pull_status != 200:
                raise SystemExit(f"wake probe {probe}: push {status}, pull {pull_status} {body!r}")
            if b'"id"' not in body:
                refused.append(probe)  # its worker was at its cap: answered at once, empty
                continue
            latencies.append((answered - pushed) * 1000)
        pusher.close()
        puller.close()
    return latencies


def run_waiters(
    server: Server, env: dict[str, str], cfg: Any, waiters: WaitersConfig
) -> dict[str, Any]:
    print(f"waiters: {waiters.families} token families ...", flush=True)
    tokens = family_tokens(env, waiters.families)
    http_single_push(server, cfg, "bench-warmup", cfg.warmup_requests)  # untimed
    print("single push, no waiters ...", flush=True)
    alone = http_single_push(server, cfg, "bench-alone", cfg.single_requests)
    print(f"opening {waiters.count} waiting pulls ...", flush=True)
    with Waiters(server.port, tokens, waiters.count, waiters.together) as held:
        took = settle(server, busy=0.05 if waiters.together else 0.25)
        print(f"{held.open} waiting pulls admitted; server idle after {took:.1f} s", flush=True)
        print(f"single push beside {held.open} waiting pulls ...", flush=True)
        beside = http_single_push(server, cfg, "bench-beside", cfg.single_requests)
        print(f"wake latency: {waiters.probes} probes ...", flush=True)
        refused: list[int] = []
        wakes = wake_latencies(server, env, waiters.probes, refused)
        answered, errors = held.answered, held.errors
    if refused:
        errors.append(f"{len(refused)} wake probes were refused a wait (worker at its cap)")
    return render(alone, beside, wakes, waiters, answered, errors)


def render(
    alone: Figure,
    beside: Figure,
    wakes: list[float],
    waiters: WaitersConfig,
    answered: int,
    errors: list[str],
) -> dict[str, Any]:
    ratio = beside.rate / alone.rate if alone.rate else 0.0
    wake_p50, wake_p99 = percentile(wakes, 50), percentile(wakes, 99)
    verdicts = {
        "push p99 < 50 ms beside the waiters": beside.p99_ms < PUSH_P99_TARGET_MS,
        "push rate within 10 % of no waiters": ratio >= 1 - RATE_WITHIN,
        "wake p99 < 50 ms": wake_p99 < WAKE_P99_TARGET_MS,
    }
    print()
    print(f"{'single push':<28}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for name, figure in (("no waiters", alone), (f"{waiters.count} waiters", beside)):
        print(
            f"{name:<28}{figure.rate:>10.0f}{figure.p50_ms:>10.1f}{figure.p99_ms:>10.1f}"
            f"{figure.errors:>8}"
        )
    print(f"rate beside the waiters / alone: {ratio:.3f}")
    print(f"wake latency ({len(wakes)} probes): p50 {wake_p50:.1f} ms, p99 {wake_p99:.1f} ms")
    print(f"waiting pulls: {answered} waits ended and were sent again, {len(errors)} errors")
    for name, ok in verdicts.items():
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")
    return {
        "waiters": asdict(waiters),
        "alone": {**asdict(alone), "rate": round(alone.rate, 1)},
        "beside": {**asdict(beside), "rate": round(beside.rate, 1)},
        "rate_ratio": round(ratio, 4),
        "wake_ms": {"p50": round(wake_p50, 2), "p99": round(wake_p99, 2), "n": len(wakes)},
        "waiters_answered": answered,
        "waiter_errors": errors[:5],
        "verdicts": verdicts,
    }
