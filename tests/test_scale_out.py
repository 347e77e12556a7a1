"""Scaling out: two app servers (gunicorn, production settings) on one PostgreSQL
database. Every limit, lease and revocation must hold across them, because app servers
share nothing but the database (see docs/scaling.md):

- a token's rate limit is one budget, wherever its calls land;
- a queue's concurrency and rate limits count the jobs handed out by every server;
- a job is leased to one worker at a time, and a lease is good (or stale) on any server;
- a revoked token stops working on every server within the principal cache time;
- a pause, schema or limit set on one server is in force on every server within the
  queue cache time.

The module makes its own scratch database (dropped at the end), migrates it once and
starts both servers with the same secrets, as a real deployment would."""

from __future__ import annotations

import http.client
import json
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings

from tests.processes import database_url, free_port, production_env, serve
from tests.support import ON_POSTGRES

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not ON_POSTGRES,
        reason="two app servers share limits, leases and revocations only through PostgreSQL: "
        "run with DATABASE_URL=postgres://...",
    ),
]

#: The principal cache (PRINCIPAL_CACHE_SECONDS) is left at its default of 1 s; a
#: revocation must have reached every server after this long.
REVOCATION_WINDOW_SECONDS = 1.5
#: So is the queue cache (QUEUE_CACHE_SECONDS): a pause, schema or limit set on one
#: server must be in force on the other this long after it committed.
QUEUE_CHANGE_WINDOW_SECONDS = 1.5


# -- the deployment: a scratch database, two servers ------------------------------------


@dataclass(frozen=True)
class Server:
    name: str
    port: int


@dataclass(frozen=True)
class Deployment:
    a: Server
    b: Server
    env: dict[str, str]

    @property
    def servers(self) -> tuple[Server, Server]:
        return (self.a, self.b)

    def manage(self, *args: str) -> str:
        """Run ``manage.py`` against the shared database; its stdout."""
        done = subprocess.run(
            [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), *args],
            env=self.env,
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"manage.py {args[0]} failed: {done.stderr[-2000:]}"
        return done.stdout

    def create_token(self, name: str, *allow: str, rate: str | None = None) -> str:
        args = ["create_token", name, *(f"--allow={rule}" for rule in allow)]
        if rate is not None:
            args.append(f"--rate={rate}")
        return self.manage(*args).strip().splitlines()[-1]


def _admin_connection() -> psycopg.Connection[tuple[Any, ...]]:
    """An autocommit connection to the server's ``postgres`` database."""
    db = settings.DATABASES["default"]
    return psycopg.connect(
        host=db.get("HOST") or None,
        port=db.get("PORT") or None,
        user=db.get("USER") or None,
        password=db.get("PASSWORD") or None,
        dbname="postgres",
        autocommit=True,
        connect_timeout=5,
    )


def _drop_database(name: str) -> None:
    with _admin_connection() as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("scale-out")
    name = f"flashq_scaleout_{secrets.token_hex(6)}"
    with _admin_connection() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    # One set of secrets for both servers, as in any deployment behind one proxy.
    env = production_env(
        database_url=database_url(name),
        static_root=root / "static",  # the API needs none; an empty folder
        # The default principal and queue cache times (1 s) are what is deployed.
        without=("PRINCIPAL_CACHE_SECONDS", "QUEUE_CACHE_SECONDS"),
    )
    try:
        deployment = Deployment(Server("A", free_port()), Server("B", free_port()), env)
        deployment.manage("migrate", "-v", "0")
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        with ExitStack() as servers:
            for server in deployment.servers:
                argv = [gunicorn, "--bind", f"127.0.0.1:{server.port}", "--workers", "2"]
                argv += ["--worker-class", "gthread", "--threads", "2", "flashq_project.wsgi"]
                log = root / f"gunicorn-{server.name}.log"
                servers.enter_context(serve(argv, env=env, port=server.port, log=log))
            yield deployment
    finally:
        _drop_database(name)


# -- HTTP ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]  # names in lower case
    body: Any


def call(server: Server, method: str, path: str, token: str, body: Any = None) -> Reply:
    """One API call (``path`` under /api/v1) on its own connection."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        payload = json.dumps(body).encode() if body is not None else None
        connection.request(method, f"/api/v1{path}", body=payload, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        parsed = json.loads(raw) if raw else None
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, parsed)
    finally:
        connection.close()


def push_jobs(server: Server, token: str, queue: str, count: int) -> list[str]:
    reply = call(
        server,
        "POST",
        f"/queues/{queue}/jobs/batch",
        token,
        {"jobs": [{"data": {"n": n}} for n in range(count)]},
    )
    assert reply.status == 201, reply.body
    return [job["id"] for job in reply.body["jobs"]]


def pull(
    server: Server, token: str, queue: str, count: int, lease: int = 60
) -> list[dict[str, Any]]:
    reply = call(server, "POST", f"/queues/{queue}/pull", token, {"count": count, "lease": lease})
    assert reply.status == 200, reply.body
    return list(reply.body["jobs"])


def ack(server: Server, token: str, job: dict[str, Any]) -> Reply:
    return call(server, "POST", f"/jobs/{job['id']}/ack", token, {"lease_id": job["lease_id"]})


def in_parallel(
    deployment: Deployment, per_server: int, work: Callable[[Server], Any]
) -> list[Any]:
    """``work(server)`` in ``per_server`` threads per server, all started together."""
    servers = [server for server in deployment.servers for _ in range(per_server)]
    start = threading.Barrier(len(servers))

    def run(server: Server) -> Any:
        start.wait(timeout=30)
        return work(server)

    with ThreadPoolExecutor(max_workers=len(servers)) as pool:
        return list(pool.map(run, servers))


def active_count(deployment: Deployment, token: str, queue: str) -> int:
    reply = call(deployment.a, "GET", f"/queues/{queue}", token)
    assert reply.status == 200, reply.body
    return int(reply.body["counts"].get("active", 0))


# -- the tests -------------------------------------------------------------------------


def test_a_token_rate_limit_is_one_budget_across_servers(deployment: Deployment) -> None:
    limit = 6
    token = deployment.create_token("rated", "rated:*=push", rate=f"{limit}/60s")
    replies = [call(deployment.servers[i % 2], "GET", "/me", token) for i in range(2 * limit)]
    statuses = [reply.status for reply in replies]
    # One budget: the first `limit` calls pass, half of them on each server, and every
    # later one is refused on both; with a budget per server all twelve would pass.
    assert statuses == [200] * limit + [429] * limit
    remaining = [int(reply.headers["ratelimit-remaining"]) for reply in replies[:limit]]
    assert remaining == list(range(limit - 1, -1, -1))
    assert all(reply.headers["ratelimit-limit"] == str(limit) for reply in replies)
    assert all("retry-after" in reply.headers for reply in replies[limit:])


def test_a_queue_concurrency_limit_holds_across_servers(deployment: Deployment) -> None:
    token = deployment.create_token("conc", "conc=push,pull,ack,admin")
    push_jobs(deployment.a, token, "conc", 12)
    reply = call(deployment.b, "PUT", "/queues/conc/concurrency", token, {"max": 3})
    assert reply.status == 200, reply.body

    def pull_rounds(server: Server) -> list[tuple[str, dict[str, Any]]]:
        return [(server.name, job) for _ in range(3) for job in pull(server, token, "conc", 2)]

    # 4 pullers per server, 3 rounds of up to 2 jobs each, nothing acked: 3 active at most.
    held = [item for batch in in_parallel(deployment, 4, pull_rounds) for item in batch]
    assert len(held) == 3
    assert len({job["id"] for _, job in held}) == 3
    assert active_count(deployment, token, "conc") == 3

    # Finishing one on the other server frees exactly one place, wherever it is pulled.
    server_name, job = held[0]
    other = deployment.b if server_name == "A" else deployment.a
    assert ack(other, token, job).status == 200
    more = [
        job
        for batch in in_parallel(deployment, 2, lambda s: pull(s, token, "conc", 2))
        for job in batch
    ]
    assert len(more) == 1
    assert active_count(deployment, token, "conc") == 3


def test_a_queue_rate_limit_holds_across_servers(deployment: Deployment) -> None:
    token = deployment.create_token("paced", "paced=push,pull,ack,admin")
    push_jobs(deployment.a, token, "paced", 20)
    reply = call(
        deployment.b, "PUT", "/queues/paced/rate-limit", token, {"max": 5, "duration_ms": 60_000}
    )
    assert reply.status == 200, reply.body

    def pull_and_ack(server: Server) -> list[str]:
        handed: list[str] = []
        for _ in range(3):
            for job in pull(server, token, "paced", 2):
                handed.append(job["id"])
                assert ack(server, token, job).status == 200
        return handed

    # Acking frees concurrency, not rate: 5 jobs a minute in all, across both servers.
    handed = [job_id for batch in in_parallel(deployment, 4, pull_and_ack) for job_id in batch]
    assert len(handed) == 5 and len(set(handed)) == 5


def test_no_job_is_leased_to_two_workers_across_servers(deployment: Deployment) -> None:
    token = deployment.create_token("leases", "leases=push,pull,ack")
    pushed = push_jobs(deployment.a, token, "leases", 60)

    def drain(server: Server) -> list[tuple[str, dict[str, Any]]]:
        taken: list[tuple[str, dict[str, Any]]] = []
        while jobs := pull(server, token, "leases", 3):
            taken += [(server.name, job) for job in jobs]
        return taken

    # 8 workers, 4 on each server, pulling until the queue is empty; leases of 60 s stay
    # live throughout, so any job handed out twice is a double lease.
    taken = [item for batch in in_parallel(deployment, 4, drain) for item in batch]
    ids = [job["id"] for _, job in taken]
    assert len(ids) == len(set(ids)), "a job was leased to two workers"
    assert sorted(ids) == sorted(pushed)
    assert {name for name, _ in taken} == {"A", "B"}

    # A lease taken on A is good on B (same token). Once it completed the job, the same
    # ack again, on either server, is answered with the job as the first ack left it (a
    # retry after a lost answer), and another token family's is refused on both.
    job = next(job for name, job in taken if name == "A")
    first = ack(deployment.b, token, job)
    assert first.status == 200
    for server in deployment.servers:
        again = ack(server, token, job)
        assert (again.status, again.body["finished_at"]) == (200, first.body["finished_at"])
    other = deployment.create_token("other", "leases=push,pull,ack")
    assert {ack(server, other, job).status for server in deployment.servers} == {409}


def test_an_expired_lease_is_stale_on_every_server(deployment: Deployment) -> None:
    token = deployment.create_token("stale", "stale=push,pull,ack")
    (job_id,) = push_jobs(deployment.a, token, "stale", 1)
    (first,) = pull(deployment.a, token, "stale", 1, lease=1)
    time.sleep(1.2)  # the lease runs out; the next pull recovers the job and leases it again
    (second,) = pull(deployment.b, token, "stale", 1, lease=60)
    assert first["id"] == second["id"] == job_id
    assert first["lease_id"] != second["lease_id"]
    for server in deployment.servers:
        assert ack(server, token, first).status == 409, f"old lease accepted on {server.name}"
    assert ack(deployment.a, token, second).status == 200


def test_a_revoked_token_stops_working_on_every_server(deployment: Deployment) -> None:
    token = deployment.create_token("revoked", "revoked=push")
    # Several calls per server, so both of each server's worker processes have (in all
    # likelihood) let the token in and remember it.
    for server in deployment.servers:
        for _ in range(4):
            assert call(server, "GET", "/me", token).status == 200, server.name

    # Keep calling while the revocation runs: each server's cache is warm when it commits.
    stop = threading.Event()
    before: list[tuple[str, int]] = []

    def keep_calling() -> None:
        while not stop.is_set():
            for server in deployment.servers:
                before.append((server.name, call(server, "GET", "/me", token).status))
            time.sleep(0.05)

    caller = threading.Thread(target=keep_calling)
    caller.start()
    try:
        deployment.manage("revoke_token", "revoked")
    finally:
        stop.set()
        caller.join(timeout=30)
    assert {name for name, status in before if status == 200} == {"A", "B"}

    time.sleep(REVOCATION_WINDOW_SECONDS)
    after = [
        (s.name, call(s, "GET", "/me", token).status) for s in deployment.servers for _ in range(4)
    ]
    assert after == [(name, 401) for name, _ in after]


# -- queue settings: one server's change, in force on the other within the cache time --


def in_force_after(holds: Callable[[], bool], since: float, *, run: int = 3) -> float:
    """Seconds from ``since`` to the start of the first of ``run`` rounds in a row in
    which ``holds()`` was true for each of 4 calls made at once (so both of a server's
    worker processes, each with its own cache, took some). Gives up after 10 s."""
    started, held = 0.0, 0
    with ThreadPoolExecutor(4) as pool:
        while held < run:
            now = time.monotonic()
            assert now - since < 10, f"not in force after 10 s ({held} rounds in a row)"
            if all(pool.map(lambda _: holds(), range(4))):
                started, held = (now if held == 0 else started), held + 1
            else:
                held = 0
    return started - since


def remembered_on(server: Server, work: Callable[[Server], Any]) -> None:
    """Calls made 4 at once, so both of the server's worker processes remember the
    queue."""
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: work(server), range(12)))


def test_a_pause_on_one_server_stops_pulls_on_the_other_within_the_cache_time(
    deployment: Deployment,
) -> None:
    token = deployment.create_token("pausing", "pausing=push,pull,admin")
    push_jobs(deployment.a, token, "pausing", 500)
    remembered_on(deployment.b, lambda server: pull(server, token, "pausing", 1))
    assert call(deployment.a, "POST", "/queues/pausing/pause", token).status == 200
    since = time.monotonic()
    took = in_force_after(lambda: pull(deployment.b, token, "pausing", 1) == [], since)
    assert took <= QUEUE_CHANGE_WINDOW_SECONDS


def test_a_schema_set_on_one_server_refuses_pushes_on_the_other_within_the_cache_time(
    deployment: Deployment,
) -> None:
    token = deployment.create_token("schema", "schema=push,admin")
    body = {"data": {"n": 1}}
    push_jobs(deployment.a, token, "schema", 1)  # the queue exists

    def push_one(server: Server) -> int:
        return call(server, "POST", "/queues/schema/jobs", token, body).status

    remembered_on(deployment.b, push_one)
    schema = {"schema": {"type": "object", "required": ["to"]}}
    assert call(deployment.a, "PUT", "/queues/schema/schema", token, schema).status == 200
    since = time.monotonic()
    took = in_force_after(lambda: push_one(deployment.b) == 422, since)
    assert took <= QUEUE_CHANGE_WINDOW_SECONDS


def test_a_rate_limit_set_on_one_server_holds_on_the_other_within_the_cache_time(
    deployment: Deployment,
) -> None:
    token = deployment.create_token("limited", "limited=push,pull,admin")
    push_jobs(deployment.a, token, "limited", 500)
    remembered_on(deployment.b, lambda server: pull(server, token, "limited", 1))
    hourly = {"max": 1, "duration_ms": 3_600_000}
    assert call(deployment.a, "PUT", "/queues/limited/rate-limit", token, hourly).status == 200
    since = time.monotonic()
    took = in_force_after(lambda: pull(deployment.b, token, "limited", 1) == [], since)
    assert took <= QUEUE_CHANGE_WINDOW_SECONDS
