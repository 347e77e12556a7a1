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
   pull's answer is taken, ``--wake-probes`` times;
4. once the waiters are gone and the server is idle again, run 1 once more: the rate
   beside the waiters is compared with the mean of the two runs without, so that what
   drifts over the run (tables growing, autovacuum) weighs on both sides. (With one
   waiter instead of 2,000, single runs 1 and 2 alone differed by up to 10 % either way.)

``--waiter-events`` holds event streams (``GET .../events``) instead of pulls.

Targets (issue 21): push p99 under 50 ms and its rate within 10 % of run 1; wake p99
under 50 ms. The waiters run in a process of their own (bare asyncio HTTP/1.1, one
keep-alive connection each), so the measured client shares no GIL with them."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import random
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.cpu import postgres_cpu, process_cpu, server_cpu
from bench.rawhttp import Connection
from bench.run import Client, Figure, Server, http_single_push, manage, percentile

WAIT_SECONDS = 30
IDLE_QUEUES = 50
PUSH_P99_TARGET_MS = 50.0
RATE_WITHIN = 0.10
WAKE_P99_TARGET_MS = 50.0
IDLE_SECONDS = 10.0


@dataclass(frozen=True)
class WaitersConfig:
    count: int
    families: int
    probes: int
    together: bool = False  # all first waits 30 s: none comes back while measuring
    events: bool = False  # event subscribers instead of waiting pulls

    @property
    def kind(self) -> str:
        return "event subscribers" if self.events else "waiting pulls"


def family_tokens(env: dict[str, str], families: int) -> list[str]:
    """One pull-only token per family (each its own family for the caps)."""
    tokens = []
    for index in range(families):
        out = manage(env, "create_token", f"waiter-{index}", "--allow", "idle-*=pull,getJobs")
        tokens.append(out.strip().splitlines()[-1].strip())
    return tokens


class Waiters:
    """``count`` pulls held open by a process of their own (so that they share no GIL
    with the measured client), each on a keep-alive connection, as a worker's are."""

    def __init__(
        self,
        port: int,
        tokens: list[str],
        count: int,
        together: bool,
        *,
        events: bool = False,
        wait: float = WAIT_SECONDS,
    ) -> None:
        self.count = count
        context = multiprocessing.get_context("spawn")
        self._open = context.Value("i", 0)
        self._answered = context.Value("i", 0)
        self._errors = context.Queue()
        self._stop = context.Event()
        self.process = context.Process(
            target=hold_waiters,
            args=(port, tokens, count, together, self._open, self._answered),
            kwargs={
                "errors": self._errors,
                "stop": self._stop,
                "wait_seconds": wait,
                "events": events,
            },
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


@dataclass(frozen=True)
class Tallies:
    """What the waiters' process tells the bench (shared values and a queue)."""

    opened: Any
    answered: Any
    errors: Any

    def count(self, value: Any) -> None:
        with value.get_lock():
            value.value += 1


def hold_waiters(
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
    events: bool,
) -> None:
    """The waiters' process: ``count`` connections until ``stop`` is set, each a pull
    sent again as soon as the last one is answered, or (``events``) an event stream."""
    tallies = Tallies(opened, answered, errors)

    def waiter(index: int) -> Coroutine[Any, Any, None]:
        token = tokens[index % len(tokens)]
        queue = f"/api/v1/queues/idle-{index % IDLE_QUEUES}"
        if events:
            return _hold_stream(port, token, f"{queue}/events", tallies)
        # The first wait is anything up to 30 s, so that the waits do not all end (and
        # come back) together: as workers' long polls, each starts when its last ended.
        first = wait_seconds if together else random.uniform(1, wait_seconds)
        return _hold_pull(port, token, f"{queue}/pull", (first, wait_seconds), tallies)

    async def run() -> None:
        tasks = [asyncio.create_task(waiter(index)) for index in range(count)]
        while not stop.is_set():
            await asyncio.sleep(0.2)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(run())


async def _hold_pull(
    port: int, token: str, path: str, waits: tuple[float, float], tallies: Tallies
) -> None:
    """A worker's long poll: sent again as soon as it is answered (its first wait, then
    the usual one), on one keep-alive connection."""
    wait, usual = waits
    first = True
    connection: Connection | None = None
    while True:
        try:
            if connection is None:
                connection = await Connection.open(port)
            await connection.send("POST", path, token, {"wait": wait})
            if first:
                tallies.count(tallies.opened)
                first = False
            wait = usual
            status, headers = await connection.head()
            body = await connection.body(headers)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            tallies.errors.put(repr(exc))
            connection = None
            await asyncio.sleep(1)
            continue
        tallies.count(tallies.answered)
        if status != 200 or "retry-after" in headers:
            tallies.errors.put(f"{status} {headers} {body[:200]!r}")
        if headers.get("connection") == "close":
            connection.close()
            connection = None


async def _hold_stream(port: int, token: str, path: str, tallies: Tallies) -> None:
    """An event subscriber: opens its stream and reads it until told to stop; opened
    again if the server ends it."""
    first = True
    while True:
        try:
            connection = await Connection.open(port)
            await connection.send("GET", path, token, accept="text/event-stream")
            status, headers = await connection.head()
            if status != 200:
                tallies.errors.put(f"{status} {headers} {await connection.body(headers)!r}")
                await asyncio.sleep(1)
                continue
            if first:
                tallies.count(tallies.opened)
                first = False
            while await connection.reader.read(4096):
                pass  # heartbeats (the idle queues have no events)
            tallies.count(tallies.answered)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            tallies.errors.put(repr(exc))
            await asyncio.sleep(1)


def _pull_and_time(client: Client, path: str) -> tuple[tuple[int, bytes], float]:
    answer = client.post(path, {"wait": 10})
    return answer, time.perf_counter()


def settle(server: Server, busy: float, limit: float = 60.0) -> float:
    """Wait until the burst of admitting the waiters (each one's first rounds) is over:
    the workers use less than ``busy`` of a core each (waits coming back keep them a
    little busy), at most ``limit`` seconds; how long that took."""
    started = time.monotonic()
    workers = len(Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split())
    while time.monotonic() - started < limit:
        before = server_cpu(server.pid)
        time.sleep(1)
        if server_cpu(server.pid) - before < busy * workers:
            break
    return time.monotonic() - started


def idle_cost(server: Server, waiters: Waiters, seconds: float) -> dict[str, float]:
    """What the waiters cost with nothing else going on: cores used by the server's
    workers, PostgreSQL and the waiters' own process, over ``seconds``."""
    pid = waiters.process.pid
    assert pid is not None

    def readings() -> list[float]:
        return [server_cpu(server.pid), postgres_cpu(), process_cpu(pid)]

    before = readings()
    started = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    after = readings()
    names = ("server", "postgres", "waiters")
    return {
        name: round((a - b) / elapsed, 3) for name, a, b in zip(names, after, before, strict=False)
    }


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
    what = waiters.kind
    print(f"opening {waiters.count} {what} ...", flush=True)
    with Waiters(
        server.port, tokens, waiters.count, waiters.together, events=waiters.events
    ) as held:
        quiet = waiters.together or waiters.events  # none comes back while measuring
        took = settle(server, busy=0.05 if quiet else 0.25)
        print(f"{held.open} {what} admitted; server idle after {took:.1f} s", flush=True)
        # (Not with --waiters-together: its 30 s waits must not end while measuring.)
        idle = {} if waiters.together else idle_cost(server, held, IDLE_SECONDS)
        print(f"single push beside {held.open} {what} ...", flush=True)
        beside = http_single_push(server, cfg, "bench-beside", cfg.single_requests)
        print(f"wake latency: {waiters.probes} probes ...", flush=True)
        refused: list[int] = []
        wakes = wake_latencies(server, env, waiters.probes, refused)
        answered, errors = held.answered, held.errors
    # Alone once more, so that whatever drifts over the run (tables and indexes growing,
    # autovacuum) weighs on both sides: beside is compared with the mean of the two.
    settle(server, busy=0.05)
    print("single push, no waiters, again ...", flush=True)
    again = http_single_push(server, cfg, "bench-alone", cfg.single_requests)
    if refused:
        errors.append(f"{len(refused)} wake probes were refused a wait (worker at its cap)")
    return render((alone, again), beside, wakes, waiters, answered, errors, idle)


def render(
    alones: tuple[Figure, Figure],
    beside: Figure,
    wakes: list[float],
    waiters: WaitersConfig,
    answered: int,
    errors: list[str],
    idle: dict[str, float],
) -> dict[str, Any]:
    alone_rate = sum(figure.rate for figure in alones) / len(alones)
    ratio = beside.rate / alone_rate if alone_rate else 0.0
    wake_p50, wake_p99 = percentile(wakes, 50), percentile(wakes, 99)
    verdicts = {
        "push p99 < 50 ms beside the waiters": beside.p99_ms < PUSH_P99_TARGET_MS,
        "push rate within 10 % of no waiters": ratio >= 1 - RATE_WITHIN,
        "wake p99 < 50 ms": wake_p99 < WAKE_P99_TARGET_MS,
    }
    print()
    print(f"{'single push':<28}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    rows = (("no waiters", alones[0]), (f"{waiters.count} waiters", beside))
    for name, figure in (*rows, ("no waiters, again", alones[1])):
        print(
            f"{name:<28}{figure.rate:>10.0f}{figure.p50_ms:>10.1f}{figure.p99_ms:>10.1f}"
            f"{figure.errors:>8}"
        )
    print(f"rate beside the waiters / mean of the two alone: {ratio:.3f}")
    if idle:
        share = sum(idle.values()) / (os.cpu_count() or 1)
        print(
            f"the waiters alone ({IDLE_SECONDS:g} s): server {idle['server']:.3f}, PostgreSQL "
            f"{idle['postgres']:.3f}, their own process {idle['waiters']:.3f} cores "
            f"({share:.1%} of this machine)"
        )
    print(f"wake latency ({len(wakes)} probes): p50 {wake_p50:.1f} ms, p99 {wake_p99:.1f} ms")
    ended = "streams ended and were opened" if waiters.events else "waits ended and were sent"
    print(f"{waiters.kind}: {answered} {ended} again, {len(errors)} errors")
    for name, ok in verdicts.items():
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")
    return {
        "waiters": asdict(waiters),
        "alone": [{**asdict(alone), "rate": round(alone.rate, 1)} for alone in alones],
        "beside": {**asdict(beside), "rate": round(beside.rate, 1)},
        "rate_ratio": round(ratio, 4),
        "idle_cost_cores": idle,
        "wake_ms": {"p50": round(wake_p50, 2), "p99": round(wake_p99, 2), "n": len(wakes)},
        "waiters_answered": answered,
        "waiter_errors": errors[:5],
        "verdicts": verdicts,
    }
