"""flashQ benchmark: the production server (gunicorn) on PostgreSQL, and in the same run
the raw-SQL ceiling for the same work (psycopg, no HTTP, no Django). The figure that
matters is the ratio HTTP / ceiling.

    .venv/bin/python bench/run.py [--quick]
    .venv/bin/python bench/run.py --flows [--flow-count N]

It recreates a scratch database (``BENCH_DATABASE_URL``, default
``postgres://postgres@127.0.0.1:5432/flashq_bench``), migrates it, creates a token,
serves the app with gunicorn on a free local port, measures single push, batch push and
pull + batch ack through HTTP and then their raw-SQL ceilings, prints a table and writes
the figures to ``bench/results/<timestamp>.json`` (gunicorn's log goes beside it).

Beside single push it measures the Python client's producer mode (``bench/producer.py``:
16 threads pushing single jobs through one ``Client(..., producer=True)``, with the
blocking ``push`` and with ``submit`` keeping 8 pushes a thread in flight, issue 24).

``--flows`` measures flows instead, end to end on the same stack: flows of 1 parent and
100 children pushed over the API, the children pulled and acked by workers, then each
parent (ready once its children have finished) pulled and acked, in flows per second.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import itertools
import json
import math
import multiprocessing
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import psycopg
import uuid6
from psycopg import sql
from psycopg.types.json import Jsonb

if TYPE_CHECKING:
    from bench.producer import ProducerRun

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
HOST = "127.0.0.1"
DEFAULT_DATABASE_URL = f"postgres://postgres@{HOST}:5432/flashq_bench"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
MAX_ERRORS = 50
MAX_SAMPLES = 3

SINGLE, BATCH, PULL = "single push", "batch push", "pull + ack"
# Single pushes with an idempotency key (a uuid4 per push, as the Python client sends),
# measured in rounds interleaved with the unkeyed ones so that noise hits both alike.
KEYED = "single push (keyed)"
# The unkeyed side of those rounds. Each round starts its threads and connections anew,
# which costs a short round more than a long run: the floor line keeps the one long run
# of SINGLE, and the keyed ratio compares rounds with rounds.
ROUNDS = "single push (rounds)"
KEYED_TARGET = 0.9  # keyed / unkeyed (issue 23)
KEYED_ROUNDS = 10
# Issue 10's targets: batch push and pull + ack against their raw-SQL ceilings; single
# push against the same server's bare /healthz rate (its raw ratio is shown, not judged).
TARGETS = {BATCH: 0.5, PULL: 0.5}
FLOOR_TARGET = 0.35
QUEUES = {
    SINGLE: "bench-single",
    KEYED: "bench-single-keyed",
    ROUNDS: "bench-single-rounds",
    BATCH: "bench-batch",
    PULL: "bench-pull",
}
WARMUP_QUEUE = "bench-warmup"
# The raw table has no queues table behind it: any distinct int per measure and repeat.
RAW_QUEUE_IDS = {SINGLE: 100, BATCH: 200, PULL: 300}
JSON_HEADERS = {"Content-Type": "application/json"}
BENCH_KEY_ID = "bench1"


@dataclass(frozen=True)
class Config:
    warmup_requests: int
    single_requests: int
    single_threads: int
    batches: int
    batch_size: int
    batch_threads: int
    pull_jobs: int
    pull_count: int
    pull_threads: int
    workers: int
    time_limit: float
    raw_repeats: int
    schema: bool = False
    groups: int = 0
    group_concurrency: int = 1
    flows: int = 0  # --flows: how many flows to run (0: the usual measures instead)
    flow_threads: int = 2
    waiters: int = 0  # --waiters: how many waiting pulls (0: the usual measures instead)
    waiter_families: int = 16
    wake_probes: int = 50
    waiters_together: bool = False
    waiter_events: bool = False


def parse_config(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(
        description="flashQ: HTTP throughput against the raw-SQL ceiling"
    )
    parser.add_argument("--quick", action="store_true", help="a short run (well under a minute)")
    parser.add_argument("--single-threads", type=int, default=8, help="client threads")
    parser.add_argument("--batch-threads", type=int, default=2, help="client threads")
    parser.add_argument("--pull-threads", type=int, default=4, help="client threads")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument(
        "--time-limit", type=float, default=120.0, help="seconds per measure before it stops"
    )
    parser.add_argument(
        "--raw-repeats", type=int, default=3, help="runs of each ceiling; the best counts"
    )
    parser.add_argument(
        "--schema",
        action="store_true",
        help="set a JSON Schema on the bench queues (validation on every push)",
    )
    parser.add_argument(
        "--groups",
        type=int,
        default=0,
        help="push every pull + ack job with group g{i %% N} (0: no groups)",
    )
    parser.add_argument(
        "--group-concurrency",
        type=int,
        default=1,
        help="the pull queue's group_concurrency when --groups is given",
    )
    parser.add_argument(
        "--flows",
        action="store_true",
        help="measure flows (1 parent + 100 children) end to end, instead of the rest",
    )
    parser.add_argument(
        "--flow-count",
        type=int,
        default=0,
        help="flows to run with --flows (default 100, --quick 20)",
    )
    parser.add_argument("--flow-threads", type=int, default=2, help="client threads pushing flows")
    parser.add_argument(
        "--waiters",
        action="store_true",
        help="single push alone and beside thousands of waiting pulls, and wake latency",
    )
    parser.add_argument("--waiter-count", type=int, default=2000, help="waiting pulls")
    parser.add_argument("--waiter-families", type=int, default=16, help="their token families")
    parser.add_argument("--wake-probes", type=int, default=50, help="wake latency samples")
    parser.add_argument(
        "--waiters-together",
        action="store_true",
        help="open every waiting pull with a full 30 s wait (none comes back while measuring)",
    )
    parser.add_argument(
        "--waiter-events",
        action="store_true",
        help="hold event streams (GET .../events) instead of waiting pulls",
    )
    args = parser.parse_args(argv)
    flows = (args.flow_count or (20 if args.quick else 100)) if args.flows else 0
    return Config(
        warmup_requests=200,
        single_requests=1000 if args.quick else 5000,
        single_threads=args.single_threads,
        batches=10 if args.quick else 50,
        batch_size=1000,
        batch_threads=args.batch_threads,
        pull_jobs=10_000 if args.quick else 50_000,
        pull_count=100,
        pull_threads=args.pull_threads,
        workers=args.workers,
        time_limit=args.time_limit,
        raw_repeats=args.raw_repeats,
        schema=args.schema,
        groups=args.groups,
        group_concurrency=args.group_concurrency,
        flows=flows,
        flow_threads=args.flow_threads,
        waiters=args.waiter_count if args.waiters else 0,
        waiter_families=args.waiter_families,
        wake_probes=args.wake_probes,
        waiters_together=args.waiters_together,
        waiter_events=args.waiter_events,
    )


# -- tallies and threads ----------------------------------------------------------------


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


class Tally:
    """What one measure did, filled in by several threads at once. The clock starts when
    every thread has called ``start`` (connections open), so set-up is not timed."""

    def __init__(self, threads: int, limit: float) -> None:
        self.limit = limit
        self.started = 0.0
        self.deadline = 0.0
        self.done = 0
        self.errors = 0
        self.truncated = False
        self.latencies_ms: list[float] = []
        self.error_samples: list[str] = []
        self.lock = threading.Lock()
        self.barrier = threading.Barrier(threads, action=self._go, timeout=60)

    def _go(self) -> None:
        self.started = time.perf_counter()
        self.deadline = time.monotonic() + self.limit

    def start(self) -> None:
        self.barrier.wait()

    def open(self) -> bool:
        """False once the time limit passed or too many calls failed."""
        with self.lock:
            if time.monotonic() > self.deadline or self.errors >= MAX_ERRORS:
                self.truncated = True
            return not self.truncated

    def add(self, *, done: int, seconds: float) -> None:
        with self.lock:
            self.done += done
            self.latencies_ms.append(seconds * 1000)

    def fail(self, sample: str) -> None:
        with self.lock:
            self.errors += 1
            if len(self.error_samples) < MAX_SAMPLES:
                self.error_samples.append(sample[:500])


@dataclass(frozen=True)
class Figure:
    """One side of one measure: ``done`` units (requests, operations or jobs)."""

    unit: str
    done: int
    seconds: float
    errors: int
    truncated: bool
    p50_ms: float
    p99_ms: float
    error_samples: list[str]

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0


def run_threads(count: int, work: Callable[[], None]) -> None:
    """Run ``work`` in ``count`` threads; re-raises a thread's exception."""
    failures: list[BaseException] = []

    def guarded() -> None:
        try:
            work()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=guarded) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


def _run_tally(threads: int, limit: float, work: Callable[[Tally], None]) -> tuple[Tally, float]:
    """``work`` in ``threads`` threads: its tally, and the seconds from its clock's start."""
    tally = Tally(threads, limit)
    run_threads(threads, lambda: work(tally))
    return tally, time.perf_counter() - tally.started


def _figure(unit: str, runs: list[tuple[Tally, float]]) -> Figure:
    """One figure of one or more runs: their units and seconds summed, the percentiles
    over every call."""
    latencies = [ms for tally, _ in runs for ms in tally.latencies_ms]
    return Figure(
        unit=unit,
        done=sum(tally.done for tally, _ in runs),
        seconds=sum(seconds for _, seconds in runs),
        errors=sum(tally.errors for tally, _ in runs),
        truncated=any(tally.truncated for tally, _ in runs),
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        error_samples=[sample for tally, _ in runs for sample in tally.error_samples][:MAX_SAMPLES],
    )


def measure(unit: str, threads: int, limit: float, work: Callable[[Tally], None]) -> Figure:
    return _figure(unit, [_run_tally(threads, limit, work)])


def measure_rounds(
    unit: str,
    threads: int,
    limit: float,
    works: dict[str, Callable[[], Callable[[Tally], None]]],
    rounds: int,
) -> dict[str, Figure]:
    """Each of ``works`` (a name and what makes its work for one round) in turn, round
    after round, the order reversed every other round (A B, B A, ...), so that noise on
    a shared machine hits each alike. A work's figure sums its rounds."""
    runs: dict[str, list[tuple[Tally, float]]] = {name: [] for name in works}
    names = list(works)
    for n in range(rounds):
        for name in names if n % 2 == 0 else names[::-1]:
            runs[name].append(_run_tally(threads, limit, works[name]()))
    return {name: _figure(unit, name_runs) for name, name_runs in runs.items()}


def timed(call: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = call(*args)
    return result, time.perf_counter() - start


# -- PostgreSQL -------------------------------------------------------------------------


def database_url(variable: str = "BENCH_DATABASE_URL", default: str = DEFAULT_DATABASE_URL) -> str:
    """The scratch database named by ``variable``, refused unless it is on this
    machine: the run drops it."""
    url = os.environ.get(variable, default)
    if urlsplit(url).hostname not in LOCAL_HOSTS:
        sys.exit(f"{variable} must point at {HOST}: the run drops that database")
    return url


def admin_url(url: str) -> str:
    return urlsplit(url)._replace(path="/postgres").geturl()


def ensure_postgres(url: str) -> None:
    try:
        psycopg.connect(admin_url(url), connect_timeout=3).close()
        return
    except psycopg.OperationalError:
        pass
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    print(f"Starting PostgreSQL {version} ...", flush=True)
    cluster = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"]
    subprocess.run(cluster, check=True)
    for _ in range(30):
        try:
            psycopg.connect(admin_url(url), connect_timeout=3).close()
            return
        except psycopg.OperationalError:
            time.sleep(1)
    sys.exit("PostgreSQL did not come up on 127.0.0.1:5432")


def server_autovacuum(url: str) -> str:
    """The server's autovacuum setting: a CI machine's PostgreSQL may run without it,
    and then no table sheds its dead rows during a run (production servers run it)."""
    with psycopg.connect(admin_url(url)) as conn:
        row = conn.execute("SELECT setting FROM pg_settings WHERE name = 'autovacuum'").fetchone()
    return str(row[0]) if row else "unknown"


def recreate_database(url: str) -> None:
    name = sql.Identifier(urlsplit(url).path.lstrip("/"))
    with psycopg.connect(admin_url(url), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(name))


def analyze(url: str, table: str) -> None:
    """Both sides get fresh planner statistics after their preload."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))


def app_job_states(url: str) -> dict[str, dict[str, int]]:
    """Jobs per queue and state after the HTTP runs: every push landed, every pull acked."""
    query = (
        "SELECT q.name, j.state, count(*) FROM queues_job j "
        "JOIN queues_queue q ON q.id = j.queue_id GROUP BY 1, 2 ORDER BY 1, 2"
    )
    states: dict[str, dict[str, int]] = {}
    with psycopg.connect(url) as conn:
        for queue, state, count in conn.execute(query):
            states.setdefault(queue, {})[state] = count
    return states


# -- the app: setup, gunicorn, HTTP client ----------------------------------------------


def app_environment(url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "flashq_project.settings.production",
        "DATABASE_URL": url,
        "SECRET_KEY": secrets.token_urlsafe(64),
        "TOKEN_PEPPER": secrets.token_urlsafe(48),
        "ENCRYPTION_KEYS": f"{BENCH_KEY_ID}:{base64.b64encode(os.urandom(32)).decode()}",
        "AUDIT_CHAIN_KEY": f"a1:{base64.b64encode(os.urandom(32)).decode()}",
        "SECURE_SSL_REDIRECT": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
    }


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        sys.exit(f"manage.py {args[0]} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def create_token(env: dict[str, str]) -> str:
    out = manage(env, "create_token", "bench", "--allow", "*=*,admin")
    return out.strip().splitlines()[-1].strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class Client:
    """One keep-alive connection; counts how often it had to (re)connect."""

    def __init__(self, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection(HOST, port, timeout=60)
        self.headers = {**JSON_HEADERS, "Authorization": f"Bearer {token}"}
        self.connects = 0

    def open(self) -> None:
        self.conn.connect()
        self.connects += 1

    def get(self, path: str) -> tuple[int, bytes]:
        if self.conn.sock is None:
            self.open()
        self.conn.request("GET", path, headers=self.headers)
        response = self.conn.getresponse()
        return response.status, response.read()

    def post(self, path: str, body: Any) -> tuple[int, bytes]:
        payload = json.dumps(body).encode()
        if self.conn.sock is None:
            self.open()
        self.conn.request("POST", path, payload, self.headers)
        response = self.conn.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self.conn.close()


@dataclass
class Server:
    port: int
    token: str
    log: Path
    pid: int = 0  # gunicorn's master
    clients: list[Client] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def client(self) -> Iterator[Client]:
        client = Client(self.port, self.token)
        client.open()
        with self.lock:
            self.clients.append(client)
        try:
            yield client
        finally:
            client.close()

    def connections(self) -> int:
        return sum(client.connects for client in self.clients)


def wait_healthy(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"gunicorn exited with {process.returncode}; see {log}")
        conn = http.client.HTTPConnection(HOST, port, timeout=5)
        try:
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.2)
    sys.exit(f"gunicorn did not answer /healthz within 60 s; see {log}")


@contextmanager
def gunicorn(env: dict[str, str], cfg: Config, token: str, log: Path) -> Iterator[Server]:
    port = free_port()
    # As deployed (ASGI workers, deploy/gunicorn.conf.py); the access log is formatted
    # but thrown away. --waiters keeps the deploy's worker count too.
    command = [
        str(Path(sys.executable).parent / "gunicorn"),
        "-c",
        str(ROOT / "deploy" / "gunicorn.conf.py"),
        f"--bind={HOST}:{port}",
        "--access-logfile=/dev/null",
        *([] if cfg.waiters else [f"--workers={cfg.workers}"]),
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
        try:
            wait_healthy(port, process, log)
            yield Server(port=port, token=token, log=log, pid=process.pid)
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# What --schema sets on every bench queue: the shape job_body pushes, strictly.
BENCH_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["userId", "n"],
    "properties": {"userId": {"type": "string", "maxLength": 64}, "n": {"type": "integer"}},
}


def set_schemas(env: dict[str, str]) -> None:
    """Set BENCH_SCHEMA on the bench queues through the service, as an operator would."""
    code = (
        "from compliance.audit import Actor; from queues.services import queue_set_schema; "
        f"[queue_set_schema(name=q, schema={BENCH_SCHEMA!r}, actor=Actor.command('bench')) "
        f"for q in {sorted([*QUEUES.values(), OPEN_QUEUE, FLOW_QUEUE, FLOW_CHILD_QUEUE])!r}]"
    )
    manage(env, "shell", "-c", code)


def job_body(n: int, groups: int = 0) -> dict[str, Any]:
    if groups:
        return {"data": {"userId": "u1", "n": n}, "group": f"g{n % groups}"}
    return {"data": {"userId": "u1", "n": n}}


def set_group_concurrency(env: dict[str, str], cfg: Config) -> None:
    """The pull queue's group_concurrency, through the service, as an operator would."""
    code = (
        "from compliance.audit import Actor; "
        "from queues.services import queue_set_group_concurrency; "
        f"queue_set_group_concurrency(name={QUEUES[PULL]!r}, "
        f"max_active={cfg.group_concurrency}, actor=Actor.command('bench'))"
    )
    manage(env, "shell", "-c", code)


def http_call(
    tally: Tally, client: Client, path: str, body: Any, expect: int
) -> tuple[bytes | None, float]:
    """POST; the body when the status is ``expect`` (else a tallied failure), and the time."""
    (status, raw), seconds = timed(client.post, path, body)
    if status != expect:
        tally.fail(f"POST {path} -> {status}: {raw.decode(errors='replace')}")
        return None, seconds
    return raw, seconds


def push_work(
    server: Server, path: str, requests: int, per_request: int, groups: int = 0, keyed: bool = False
) -> Callable[[Tally], None]:
    """The work of POSTing ``requests`` pushes of ``per_request`` jobs each (1: the
    single-push route, with a plain job body; more: the batch route's ``{"jobs":
    [...]}``), in ``groups`` groups if given; ``keyed``: each job with a new uuid4 key."""
    counter = itertools.count()

    def body(n: int) -> Any:
        if per_request == 1:
            return (
                {**job_body(n, groups), "key": uuid.uuid4().hex} if keyed else job_body(n, groups)
            )
        return {"jobs": [job_body(n * per_request + i, groups) for i in range(per_request)]}

    def work(tally: Tally) -> None:
        with server.client() as client:
            tally.start()
            while tally.open() and (n := next(counter)) < requests:
                raw, seconds = http_call(tally, client, path, body(n), 201)
                tally.add(done=per_request if raw is not None else 0, seconds=seconds)

    return work


def http_push(
    server: Server,
    cfg: Config,
    path: str,
    requests: int,
    per_request: int,
    threads: int,
    groups: int = 0,
) -> Figure:
    """``push_work`` measured."""
    work = push_work(server, path, requests, per_request, groups)
    return measure("req/s" if per_request == 1 else "jobs/s", threads, cfg.time_limit, work)


def http_healthz(server: Server, cfg: Config, requests: int) -> Figure:
    """The stack's floor: the same gunicorn, clients and threads as single push, on the
    bare ``/healthz`` (no auth, no database): what a request costs before any work."""
    counter = itertools.count()

    def work(tally: Tally) -> None:
        with server.client() as client:
            tally.start()
            while tally.open() and next(counter) < requests:
                (status, raw), seconds = timed(client.get, "/healthz")
                if status != 200:
                    tally.fail(f"GET /healthz -> {status}: {raw.decode(errors='replace')}")
                tally.add(done=1 if status == 200 else 0, seconds=seconds)

    return measure("req/s", cfg.single_threads, cfg.time_limit, work)


OPEN_QUEUE = "bench-open"
OPEN_LOOP_RATE = 100  # requests offered per second
OPEN_LOOP_SECONDS = 10
OPEN_LOOP_P99_TARGET_MS = 25.0


def http_open_loop(server: Server, cfg: Config, queue: str, rate: int, seconds: float) -> Figure:
    """Single pushes offered at a fixed rate (open loop), not as fast as clients can go:
    request i is due at start + i / rate, and its latency counts from when it was due,
    so a slow server is charged for the queueing it causes (no coordinated omission).
    16 connections send them; a request waits only if all 16 are busy."""
    total = int(rate * seconds)
    due = itertools.count()
    path = f"/api/v1/queues/{queue}/jobs"
    connections = 16

    def work(tally: Tally) -> None:
        with server.client() as client:
            tally.start()
            while (n := next(due)) < total:
                scheduled = tally.started + n / rate
                pause = scheduled - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                status, raw = client.post(path, job_body(n))
                if status != 201:
                    tally.fail(f"POST {path} -> {status}: {raw.decode(errors='replace')}")
                tally.add(done=1 if status == 201 else 0, seconds=time.perf_counter() - scheduled)

    return measure("req/s", connections, max(cfg.time_limit, seconds * 3), work)


def http_single_push(server: Server, cfg: Config, queue: str, requests: int) -> Figure:
    path = f"/api/v1/queues/{queue}/jobs"
    return http_push(server, cfg, path, requests, 1, cfg.single_threads)


def http_push_batches(
    server: Server, cfg: Config, queue: str, batches: int, groups: int = 0
) -> Figure:
    path = f"/api/v1/queues/{queue}/jobs/batch"
    return http_push(server, cfg, path, batches, cfg.batch_size, cfg.batch_threads, groups)


def http_pull_ack(server: Server, cfg: Config) -> Figure:
    """Workers as the API offers them: each pull carries the previous batch's acks
    (one request per batch); the last, empty pull acks the final batch."""
    pull = f"/api/v1/queues/{QUEUES[PULL]}/pull"

    def work(tally: Tally) -> None:
        with server.client() as client:
            tally.start()
            acks: list[dict[str, str]] = []
            while tally.open():
                body = {"count": cfg.pull_count, "lease": 60, "ack": acks}
                raw, seconds = http_call(tally, client, pull, body, 200)
                if raw is None:
                    return
                tally.add(done=len(acks), seconds=seconds)
                jobs = json.loads(raw)["jobs"]
                acks = [{"id": job["id"], "lease_id": job["lease_id"]} for job in jobs]
                if not jobs:
                    return

    return measure("jobs/s", cfg.pull_threads, cfg.time_limit, work)


FLOWS = "flows"
FLOW_QUEUE, FLOW_CHILD_QUEUE = "bench-flow", "bench-flow-child"
FLOW_CHILDREN = 100
# An idle worker's pause before it pulls again (pulls do not wait: a bench token's long
# polls would run into its family's cap).
IDLE_PAUSE = 0.01


def flow_body(n: int) -> dict[str, Any]:
    """Flow ``n``: a parent in FLOW_QUEUE, FLOW_CHILDREN children in FLOW_CHILD_QUEUE."""
    children = [
        {"queue": FLOW_CHILD_QUEUE, "job": job_body(n * FLOW_CHILDREN + i)}
        for i in range(FLOW_CHILDREN)
    ]
    return {"job": job_body(n), "children": children}


@dataclass
class FlowProgress:
    """What the flow threads share: flows pushed (and when), children and parents acked."""

    pushing: int  # producers still at work
    pushed_at: dict[str, float] = field(default_factory=dict)  # parent id -> push sent
    numbers: Iterator[int] = field(default_factory=itertools.count)  # flows to push
    children_acked: int = 0
    parents_acked: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def acked(self, acks: list[dict[str, str]], *, parents: bool) -> list[float]:
        """Count acks that went through; for parents, when their flows were pushed."""
        with self.lock:
            if not parents:
                self.children_acked += len(acks)
                return []
            self.parents_acked += len(acks)
            # A parent acked before its producer read the push's answer (which 100
            # children's pulls and acks would have to overtake) counts no latency.
            now = time.perf_counter()
            return [self.pushed_at.get(ack["id"], now) for ack in acks]

    def children_done(self) -> bool:
        with self.lock:
            return not self.pushing and self.children_acked >= len(self.pushed_at) * FLOW_CHILDREN

    def parents_done(self) -> bool:
        with self.lock:
            return not self.pushing and self.parents_acked >= len(self.pushed_at)


def _push_flows(tally: Tally, client: Client, cfg: Config, progress: FlowProgress) -> None:
    """A producer: push flows until ``cfg.flows`` have been (its share of them)."""
    path = f"/api/v1/queues/{FLOW_QUEUE}/flows"
    try:
        while tally.open() and (n := next(progress.numbers)) < cfg.flows:
            sent = time.perf_counter()
            raw, _ = http_call(tally, client, path, flow_body(n), 201)
            if raw is not None:
                with progress.lock:
                    progress.pushed_at[json.loads(raw)["id"]] = sent
    finally:
        with progress.lock:
            progress.pushing -= 1


def _work_flows(
    tally: Tally, client: Client, cfg: Config, progress: FlowProgress, *, parents: bool
) -> None:
    """A worker on the parents' queue or the children's: pull with the previous batch's
    acks until every job of its kind is acked. A parent's ack finishes its flow."""
    path = f"/api/v1/queues/{FLOW_QUEUE if parents else FLOW_CHILD_QUEUE}/pull"
    done = progress.parents_done if parents else progress.children_done
    acks: list[dict[str, str]] = []
    while tally.open() and not done():
        body = {"count": cfg.pull_count, "lease": 60, "ack": acks}
        raw, _ = http_call(tally, client, path, body, 200)
        if raw is None:
            return
        finished = progress.acked(acks, parents=parents)
        now = time.perf_counter()
        for sent in finished:
            tally.add(done=1, seconds=now - sent)
        jobs = json.loads(raw)["jobs"]
        acks = [{"id": job["id"], "lease_id": job["lease_id"]} for job in jobs]
        if not jobs:
            time.sleep(IDLE_PAUSE)


def http_flows(server: Server, cfg: Config) -> Figure:
    """Flows end to end: ``flow_threads`` producers push ``cfg.flows`` flows
    (``POST /queues/bench-flow/flows``, 201); ``pull_threads - 1`` workers pull and ack
    the children (piggy-backed acks, as pull + ack does); one worker pulls and acks the
    parents as they become ready. A flow is done when its parent is acked: the figure
    counts those, and its latencies are each flow's, from its push to its parent's ack.
    The clock stops when the last parent is acked."""
    progress = FlowProgress(pushing=cfg.flow_threads)
    roles = itertools.count()
    child_workers = max(1, cfg.pull_threads - 1)

    def work(tally: Tally) -> None:
        role = next(roles)
        with server.client() as client:
            tally.start()
            if role < cfg.flow_threads:
                _push_flows(tally, client, cfg, progress)
            else:
                parents = role >= cfg.flow_threads + child_workers
                _work_flows(tally, client, cfg, progress, parents=parents)

    return measure("flows/s", cfg.flow_threads + child_workers + 1, cfg.time_limit, work)


def render_flows(figure: Figure, states: dict[str, dict[str, int]]) -> str:
    jobs_per_s = figure.rate * (1 + FLOW_CHILDREN)
    note = " (stopped early)" if figure.truncated else ""
    lines = [
        f"{FLOWS} (1 parent + {FLOW_CHILDREN} children)  HTTP  {figure.done} flows in "
        f"{figure.seconds:.2f} s = {figure.rate:.1f} flows/s ({jobs_per_s:.0f} jobs/s), "
        f"{figure.errors} failed{note}",
        f"flow latency (push to parent acked)  p50 {figure.p50_ms:.0f} ms"
        f"  p99 {figure.p99_ms:.0f} ms",
        *(f"    {sample}" for sample in figure.error_samples),
        f"app jobs by queue and state: {json.dumps(states)}",
    ]
    return "\n".join(lines)


def run_flows(env: dict[str, str], url: str, cfg: Config, token: str, stamp: str) -> None:
    """The --flows run: warm-up, the flows, the report (no raw ceiling: SQL alone has no
    flows to compare with)."""
    log = RESULTS / f"{stamp}-gunicorn.log"
    with gunicorn(env, cfg, token, log) as server:
        warmup = http_single_push(server, cfg, WARMUP_QUEUE, cfg.warmup_requests)
        if warmup.errors:
            sys.exit(f"warm-up failed: {warmup.error_samples}")
        print(
            f"{FLOWS}: {cfg.flows} x (1 + {FLOW_CHILDREN}) jobs, {cfg.flow_threads} producers, "
            f"{max(1, cfg.pull_threads - 1)} child workers, 1 parent worker",
            flush=True,
        )
        figure = http_flows(server, cfg)
    states = app_job_states(url)
    print()
    print(render_flows(figure, states))
    report = {
        "time": stamp,
        "commit": git_commit(),
        "config": asdict(cfg),
        "results": {FLOWS: {**asdict(figure), "rate": round(figure.rate, 2)}},
        "app_job_states": states,
        "gunicorn_log": str(log.relative_to(ROOT)),
    }
    out = RESULTS / f"{stamp}-flows.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nfigures: {out.relative_to(ROOT)}  gunicorn log: {log.relative_to(ROOT)}")


# -- the raw-SQL ceiling ----------------------------------------------------------------

RAW_TABLE = "bench_raw_job"
# The columns a push writes (the rest are NULL), constants inline as the app's are fixed.
RAW_COLUMNS = (
    "id, queue_id, state, priority, data, attempts, max_attempts, backoff, run_at, "
    "created_at, tags, progress, progress_message, error_code, lease_owner, lease_seconds, "
    "subject, pushed_by, watched, on_child_failure, depth"
)
RAW_ROW = (
    "(%s, %s, 'waiting', 0, %s, 0, 3, %s, now(), now(), '[]', 0, '', '', '', 30, %s, "
    "'family:bench00000000', false, 'fail', 0)"
)
# The app stores data sealed (security.encryption): version, key id length, key id,
# 12-byte nonce, JSON ciphertext, 16-byte tag. The ceiling stores as many random bytes:
# the database's work, without the app's encryption.
SEAL_OVERHEAD = 2 + len(BENCH_KEY_ID) + 12 + 16
RAW_BACKOFF = {"type": "exponential", "delay": 1000, "max": 3_600_000, "jitter": 0.2}
# queues/claim.py POSTGRESQL_CLAIM, against the raw table.
RAW_CLAIM = f"""
    WITH picked AS (
        SELECT id FROM {RAW_TABLE}
        WHERE queue_id = %(queue_id)s AND state = 'waiting' AND run_at <= now()
          AND (expires_at IS NULL OR expires_at > now())
        ORDER BY priority DESC, run_at, id
        LIMIT %(count)s
        FOR UPDATE SKIP LOCKED)
    UPDATE {RAW_TABLE} AS j SET
        state = 'active', attempts = j.attempts + 1, lease_id = gen_random_uuid(),
        lease_owner = 'bench', lease_seconds = %(lease)s,
        lease_expires_at = now() + %(lease)s * interval '1 second',
        started_at = COALESCE(j.started_at, now())
    FROM picked WHERE j.id = picked.id
    RETURNING j.id, j.lease_id, j.data
"""
# The app's ack keeps the completing lease on the row (its repeat is answered again).
RAW_ACK = f"""
    UPDATE {RAW_TABLE} AS j SET
        state = 'completed', finished_at = now(), lease_expires_at = NULL
    FROM unnest(%s::uuid[], %s::uuid[]) AS acked(id, lease_id)
    WHERE j.id = acked.id AND j.lease_id = acked.lease_id AND j.state = 'active'
      AND j.lease_owner = 'bench'
"""


def create_raw_table(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {RAW_TABLE} (LIKE queues_job INCLUDING ALL)")


def raw_params(queue_id: int, n: int) -> list[Any]:
    data = job_body(n)["data"]
    sealed = os.urandom(SEAL_OVERHEAD + len(json.dumps(data, separators=(",", ":"))))
    return [uuid6.uuid7(), queue_id, sealed, Jsonb(RAW_BACKOFF), data["userId"]]


def raw_insert_sql(rows: int) -> str:
    return f"INSERT INTO {RAW_TABLE} ({RAW_COLUMNS}) VALUES " + ", ".join([RAW_ROW] * rows)


@dataclass(frozen=True)
class RawJob:
    """One ceiling run, handed to each of its processes."""

    kind: str  # SINGLE, BATCH or PULL
    url: str
    queue_id: int
    total: int  # units of work to share out (rows or batches; PULL: until empty)
    batch_size: int
    pull_count: int
    limit: float


@dataclass(frozen=True)
class RawResult:
    done: int
    started: float  # time.monotonic(): the clock is the system's, shared by processes
    ended: float
    latencies_ms: list[float]
    errors: list[str]
    truncated: bool


def _raw_insert(job: RawJob, conn: psycopg.Connection[Any], n: int) -> int:
    rows = 1 if job.kind == SINGLE else job.batch_size
    first = n * rows
    params = [value for i in range(rows) for value in raw_params(job.queue_id, first + i)]
    conn.execute(raw_insert_sql(rows), params)
    return rows


def _raw_process(job: RawJob, counter: Any, barrier: Any, results: Any) -> None:
    """One process of a ceiling: its own connection, its share of the work."""
    latencies: list[float] = []
    errors: list[str] = []
    done = 0
    truncated = False
    claim = {"queue_id": job.queue_id, "count": job.pull_count, "lease": 60}
    with psycopg.connect(job.url, autocommit=True) as conn:
        barrier.wait()
        started = time.monotonic()
        deadline = started + job.limit
        leased: list[tuple[Any, Any]] = []
        while True:
            if time.monotonic() > deadline:
                truncated = True
                break
            begin = time.perf_counter()
            if job.kind == PULL:
                # As a worker with piggy-backed acks does: ack the last batch and claim
                # the next in one transaction.
                with conn.transaction():
                    if leased:
                        ids, leases = [row[0] for row in leased], [row[1] for row in leased]
                        acked = conn.execute(RAW_ACK, [ids, leases]).rowcount
                        if acked != len(leased):
                            errors.append(f"raw ack updated {acked} of {len(leased)} rows")
                        done += acked
                    rows = conn.execute(RAW_CLAIM, claim).fetchall()
                latencies.append((time.perf_counter() - begin) * 1000)
                leased = [(row[0], row[1]) for row in rows]
                if not leased:
                    break
                continue
            with counter.get_lock():
                n = counter.value
                counter.value += 1
            if n >= job.total:
                break
            done += _raw_insert(job, conn, n)
            latencies.append((time.perf_counter() - begin) * 1000)
        results.put(RawResult(done, started, time.monotonic(), latencies, errors, truncated))


def raw_measure(unit: str, processes: int, job: RawJob) -> Figure:
    """Run a ceiling in ``processes`` separate processes (each its own interpreter and
    connection, as separate clients would be), started together."""
    context = multiprocessing.get_context("spawn")
    counter = context.Value("q", 0)
    barrier = context.Barrier(processes)
    results = context.Queue()
    workers = [
        context.Process(target=_raw_process, args=(job, counter, barrier, results))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    outcomes: list[RawResult] = [results.get(timeout=job.limit + 120) for _ in workers]
    for worker in workers:
        worker.join()
    latencies = [ms for outcome in outcomes for ms in outcome.latencies_ms]
    errors = [error for outcome in outcomes for error in outcome.errors]
    return Figure(
        unit=unit,
        done=sum(outcome.done for outcome in outcomes),
        seconds=max(o.ended for o in outcomes) - min(o.started for o in outcomes),
        errors=len(errors),
        truncated=any(outcome.truncated for outcome in outcomes),
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        error_samples=errors[:MAX_SAMPLES],
    )


def _raw_job(kind: str, url: str, cfg: Config, queue_id: int, total: int) -> RawJob:
    return RawJob(kind, url, queue_id, total, cfg.batch_size, cfg.pull_count, cfg.time_limit)


def raw_single_push(url: str, cfg: Config, queue_id: int) -> Figure:
    job = _raw_job(SINGLE, url, cfg, queue_id, cfg.single_requests)
    return raw_measure("ops/s", cfg.single_threads, job)


def raw_push_batches(url: str, cfg: Config, queue_id: int, batches: int, threads: int) -> Figure:
    """One multi-row INSERT of ``batch_size`` rows per transaction (autocommit)."""
    return raw_measure("jobs/s", threads, _raw_job(BATCH, url, cfg, queue_id, batches))


def raw_pull_ack(url: str, cfg: Config, queue_id: int) -> Figure:
    """Claim the next batch and ack the last one, in one transaction per batch."""
    return raw_measure("jobs/s", cfg.pull_threads, _raw_job(PULL, url, cfg, queue_id, 0))


# -- the run ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """The ceiling is the best of its repeats: the raw runs are short, so noise dominates."""

    name: str
    http: Figure
    raw_runs: list[Figure]

    @property
    def raw(self) -> Figure:
        return max(self.raw_runs, key=lambda figure: figure.rate)

    @property
    def ratio(self) -> float:
        return self.http.rate / self.raw.rate if self.raw.rate else 0.0

    @property
    def verdict(self) -> str:
        if self.name not in TARGETS:
            return "-"
        return "PASS" if self.ratio >= TARGETS[self.name] else "BELOW"

    def as_json(self) -> dict[str, Any]:
        def side(figure: Figure) -> dict[str, Any]:
            return {**asdict(figure), "rate": round(figure.rate, 1)}

        return {
            "http": side(self.http),
            "raw": side(self.raw),
            "raw_rates": [round(figure.rate, 1) for figure in self.raw_runs],
            "ratio": round(self.ratio, 4),
            "target": TARGETS.get(self.name),
            "verdict": self.verdict,
        }


def raw_queue_ids(name: str, cfg: Config) -> list[int]:
    return [RAW_QUEUE_IDS[name] + repeat for repeat in range(cfg.raw_repeats)]


def compare_single_push(server: Server, url: str, cfg: Config) -> list[Comparison]:
    """Single pushes in one run (the floor line's), then without and with a key in
    interleaved rounds (each side ``single_requests`` in all), then the ceiling; the
    keyed side is shown against the same (unkeyed) ceiling."""
    print(f"{SINGLE}: {cfg.single_requests} requests, {cfg.single_threads} threads", flush=True)
    single = http_single_push(server, cfg, QUEUES[SINGLE], cfg.single_requests)
    print(
        f"{SINGLE}, unkeyed and keyed: {cfg.single_requests} requests each in "
        f"{KEYED_ROUNDS} interleaved rounds, {cfg.single_threads} threads",
        flush=True,
    )
    share = max(1, cfg.single_requests // KEYED_ROUNDS)

    def pushes(name: str) -> Callable[[], Callable[[Tally], None]]:
        path = f"/api/v1/queues/{QUEUES[name]}/jobs"
        return lambda: push_work(server, path, share, 1, keyed=name == KEYED)

    works = {ROUNDS: pushes(ROUNDS), KEYED: pushes(KEYED)}
    http = measure_rounds("req/s", cfg.single_threads, cfg.time_limit, works, KEYED_ROUNDS)
    raw = [raw_single_push(url, cfg, queue_id) for queue_id in raw_queue_ids(SINGLE, cfg)]
    return [
        Comparison(SINGLE, single, raw),
        Comparison(KEYED, http[KEYED], raw),
        Comparison(ROUNDS, http[ROUNDS], raw),
    ]


def compare_batch_push(server: Server, url: str, cfg: Config) -> Comparison:
    print(f"{BATCH}: {cfg.batches} x {cfg.batch_size}, {cfg.batch_threads} threads", flush=True)
    http = http_push_batches(server, cfg, QUEUES[BATCH], cfg.batches)
    raw = [
        raw_push_batches(url, cfg, queue_id, cfg.batches, cfg.batch_threads)
        for queue_id in raw_queue_ids(BATCH, cfg)
    ]
    return Comparison(BATCH, http, raw)


def compare_pull_ack(server: Server, url: str, cfg: Config) -> Comparison:
    """Preloads are not timed; both tables are analyzed after them, as autovacuum would."""
    print(f"{PULL}: preloading {cfg.pull_jobs} jobs on each side ...", flush=True)
    preload = math.ceil(cfg.pull_jobs / cfg.batch_size)
    loaded = http_push_batches(server, cfg, QUEUES[PULL], preload, cfg.groups)
    if loaded.errors:
        sys.exit(f"preloading {QUEUES[PULL]} failed: {loaded.error_samples}")
    queue_ids = raw_queue_ids(PULL, cfg)
    for queue_id in queue_ids:
        raw_push_batches(url, cfg, queue_id, preload, cfg.batch_threads)
    analyze(url, "queues_job")
    analyze(url, RAW_TABLE)
    print(f"{PULL}: count {cfg.pull_count}, {cfg.pull_threads} threads", flush=True)
    http = http_pull_ack(server, cfg)
    return Comparison(PULL, http, [raw_pull_ack(url, cfg, queue_id) for queue_id in queue_ids])


def measure_http_and_raw(
    server: Server, url: str, cfg: Config
) -> tuple[list[Comparison], ProducerRun]:
    """Each measure through HTTP, then its ceiling, so both see a table of similar size.
    A warm-up first lets every gunicorn thread import the app and open its connection.
    Beside single push, for as long: the Python client's producer mode (issue 24)."""
    from bench.producer import PRODUCER_THREADS, SUBMIT_WINDOW, http_producer

    warmup = http_single_push(server, cfg, WARMUP_QUEUE, cfg.warmup_requests)
    if warmup.errors:
        sys.exit(f"warm-up failed: {warmup.error_samples}")
    singles = compare_single_push(server, url, cfg)
    seconds = singles[0].http.seconds
    print(
        f"producer: {seconds:.1f} s each, {PRODUCER_THREADS} threads with push, then "
        f"with submit x {SUBMIT_WINDOW}",
        flush=True,
    )
    producer = http_producer(server, seconds)
    return [
        *singles,
        compare_batch_push(server, url, cfg),
        compare_pull_ack(server, url, cfg),
    ], producer


def target_text(name: str) -> str:
    return f"{TARGETS[name]:.2f}x" if name in TARGETS else "-"


@dataclass(frozen=True)
class Target:
    """One of the target lines (issues 10 and 23)."""

    name: str
    figure: str
    target: str
    passed: bool

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "BELOW"


def keyed_ratio(comparisons: list[Comparison]) -> float:
    """Keyed single pushes per second / unkeyed ones, measured side by side (rounds)."""
    rates = {c.name: c.http.rate for c in comparisons}
    return rates[KEYED] / rates[ROUNDS] if rates[ROUNDS] else 0.0


def targets(
    comparisons: list[Comparison], floor: Figure, offered: Figure, producer: ProducerRun
) -> list[Target]:
    from bench.producer import PRODUCER_P99_TARGET_MS, PRODUCER_RATE_TARGET, SUBMIT_WINDOW

    push, keyed, rounds = (comparison.http for comparison in comparisons[:3])
    gathered = producer.submitted.figure
    ratio = push.rate / floor.rate if floor.rate else 0.0
    lines = [
        Target(
            "single push keyed / unkeyed",
            f"{keyed.rate:.0f} / {rounds.rate:.0f} req/s = {keyed_ratio(comparisons):.3f}x",
            f">= {KEYED_TARGET:.2f}x",
            keyed_ratio(comparisons) >= KEYED_TARGET and not keyed.errors,
        ),
        Target(
            "single push / healthz floor",
            f"{push.rate:.0f} / {floor.rate:.0f} req/s = {ratio:.3f}x",
            f">= {FLOOR_TARGET:.2f}x",
            ratio >= FLOOR_TARGET,
        ),
        Target(
            f"open loop p99 at {OPEN_LOOP_RATE}/s",
            f"{offered.p99_ms:.1f} ms (p50 {offered.p50_ms:.1f} ms, {offered.errors} failed)",
            f"<= {OPEN_LOOP_P99_TARGET_MS:.0f} ms",
            offered.p99_ms <= OPEN_LOOP_P99_TARGET_MS
            and offered.errors == 0
            and offered.done == OPEN_LOOP_RATE * OPEN_LOOP_SECONDS,
        ),
        Target(
            f"producer submit (16x{SUBMIT_WINDOW}) rate",
            f"{gathered.rate:.0f} jobs/s ({producer.submitted.jobs_per_batch:.1f} per batch)",
            f">= {PRODUCER_RATE_TARGET:,.0f}/s",
            gathered.rate >= PRODUCER_RATE_TARGET and not gathered.errors,
        ),
        Target(
            f"producer submit (16x{SUBMIT_WINDOW}) p99",
            f"{gathered.p99_ms:.1f} ms (p50 {gathered.p50_ms:.1f} ms)",
            f"<= {PRODUCER_P99_TARGET_MS:.0f} ms",
            gathered.p99_ms <= PRODUCER_P99_TARGET_MS and not gathered.errors,
        ),
    ]
    lines += [
        Target(
            f"{c.name} / raw",
            f"{c.http.rate:.0f} / {c.raw.rate:.0f} {c.http.unit} = {c.ratio:.3f}x",
            f">= {TARGETS[c.name]:.2f}x",
            c.ratio >= TARGETS[c.name] and not c.http.errors,
        )
        for c in comparisons
        if c.name in TARGETS
    ]
    return lines


def render_targets(lines: list[Target]) -> str:
    out = ["", f"{'target (issues 10, 23, 24)':<30} {'measured':<44} {'target':<11} verdict"]
    out += [f"{t.name:<30} {t.figure:<44} {t.target:<11} {t.verdict}" for t in lines]
    return "\n".join(out)


def render(comparisons: list[Comparison], server: Server, states: dict[str, dict[str, int]]) -> str:
    head = f"{'measure':<19} {'HTTP (gunicorn)':>18} {'raw SQL (best)':>18} {'ratio':>7}"
    lines = [head + f" {'target':>7}  verdict", "-" * (len(head) + 17)]
    for c in comparisons:
        lines.append(
            f"{c.name:<19} {c.http.rate:>10.0f} {c.http.unit:<7} {c.raw.rate:>10.0f} "
            f"{c.raw.unit:<7} {c.ratio:>6.3f}x {target_text(c.name):>7}  {c.verdict}"
        )
    single = comparisons[0]
    lines += [
        "",
        f"single push latency  HTTP p50 {single.http.p50_ms:.1f} ms"
        f"  p99 {single.http.p99_ms:.1f} ms | raw p50 {single.raw.p50_ms:.2f} ms"
        f"  p99 {single.raw.p99_ms:.2f} ms",
        f"keyed push latency   HTTP p50 {comparisons[1].http.p50_ms:.1f} ms"
        f"  p99 {comparisons[1].http.p99_ms:.1f} ms; keyed / unkeyed rate "
        f"{keyed_ratio(comparisons):.3f}x",
    ]
    for c in comparisons:
        raw_runs = ((f"raw {n}", run) for n, run in enumerate(c.raw_runs, 1))
        for side, figure in (("HTTP", c.http), *raw_runs):
            note = " (stopped early)" if figure.truncated else ""
            lines.append(
                f"{c.name:<19} {side:<6} {figure.done:>6} in {figure.seconds:6.2f} s "
                f"= {figure.rate:>6.0f} {figure.unit}, {figure.errors} failed{note}"
            )
            lines += [f"    {sample}" for sample in figure.error_samples]
    lines += [
        f"HTTP connections opened: {server.connections()} for {len(server.clients)} clients",
        f"app jobs by queue and state: {json.dumps(states)}",
    ]
    return "\n".join(lines)


def git_commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return done.stdout.strip()


def run_waiters_bench(env: dict[str, str], cfg: Config, token: str, stamp: str) -> None:
    from bench.waiters import WaitersConfig, run_waiters

    log = RESULTS / f"{stamp}-gunicorn.log"
    waiters = WaitersConfig(
        cfg.waiters, cfg.waiter_families, cfg.wake_probes, cfg.waiters_together, cfg.waiter_events
    )
    with gunicorn(env, cfg, token, log) as server:
        figures = run_waiters(server, env, cfg, waiters)
    out = RESULTS / f"{stamp}-waiters.json"
    report = {"time": stamp, "commit": git_commit(), "config": asdict(cfg), **figures}
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nfigures: {out.relative_to(ROOT)}  gunicorn log: {log.relative_to(ROOT)}")


def main(argv: list[str] | None = None) -> None:
    from bench.producer import render_producer

    cfg = parse_config(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    url = database_url()
    ensure_postgres(url)
    autovacuum = server_autovacuum(url)
    print(f"PostgreSQL autovacuum: {autovacuum}", flush=True)
    if autovacuum != "on":
        print("  (no table sheds its dead rows during this run; a production server would)")
    recreate_database(url)
    env = app_environment(url)
    print("Migrating the scratch database ...", flush=True)
    manage(env, "migrate", "--noinput")
    token = create_token(env)
    if cfg.schema:
        print("Setting a JSON Schema on the bench queues ...", flush=True)
        set_schemas(env)
    if cfg.groups:
        print(f"{PULL}: {cfg.groups} groups, group_concurrency {cfg.group_concurrency}", flush=True)
        set_group_concurrency(env, cfg)
    if cfg.flows:
        run_flows(env, url, cfg, token, stamp)
        return
    if cfg.waiters:
        run_waiters_bench(env, cfg, token, stamp)
        return
    create_raw_table(url)
    log = RESULTS / f"{stamp}-gunicorn.log"
    with gunicorn(env, cfg, token, log) as server:
        comparisons, producer = measure_http_and_raw(server, url, cfg)
        print(f"healthz floor: {cfg.single_requests} requests", flush=True)
        floor = http_healthz(server, cfg, cfg.single_requests)
        print(f"open loop: {OPEN_LOOP_RATE} pushes/s for {OPEN_LOOP_SECONDS} s", flush=True)
        offered = http_open_loop(server, cfg, OPEN_QUEUE, OPEN_LOOP_RATE, OPEN_LOOP_SECONDS)
    states = app_job_states(url)
    print()
    print(render(comparisons, server, states))
    print(render_producer(producer, comparisons[0].http))
    print(
        f"/healthz floor (same gunicorn, {cfg.single_threads} clients): {floor.rate:.0f} req/s, "
        f"p50 {floor.p50_ms:.1f} ms, p99 {floor.p99_ms:.1f} ms"
    )
    verdicts = targets(comparisons, floor, offered, producer)
    print(render_targets(verdicts))
    floor_ratio = comparisons[0].http.rate / floor.rate if floor.rate else 0.0
    report = {
        "time": stamp,
        "commit": git_commit(),
        "config": asdict(cfg),
        "postgres_autovacuum": autovacuum,
        "results": {c.name: c.as_json() for c in comparisons},
        "healthz_floor": {**asdict(floor), "rate": round(floor.rate, 1)},
        "single_push_vs_floor": round(floor_ratio, 4),
        "keyed_vs_unkeyed_single_push": round(keyed_ratio(comparisons), 4),
        "producer": producer.as_json(),
        "open_loop": {
            "offered_per_s": OPEN_LOOP_RATE,
            "seconds": OPEN_LOOP_SECONDS,
            **asdict(offered),
        },
        "targets": [{**asdict(t), "verdict": t.verdict} for t in verdicts],
        "http_connections": server.connections(),
        "app_job_states": states,
        "gunicorn_log": str(log.relative_to(ROOT)),
    }
    out = RESULTS / f"{stamp}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nfigures: {out.relative_to(ROOT)}  gunicorn log: {log.relative_to(ROOT)}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # bench.waiters, run as a script
    main()
