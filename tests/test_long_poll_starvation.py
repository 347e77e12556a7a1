"""The attack of issue 17, replayed on the production server (deploy/gunicorn.conf.py,
one ASGI worker, production settings, PostgreSQL): one token opens 64 waiting pulls,
eight times the eight threads a gthread worker had (issue 21: a wait holds no thread).
Another tenant's push, pull and ack and ``/readyz`` must still answer within a second,
the worker must not have grown a thread per wait, the pulls past the family's cap must
come back at once with Retry-After, and the waiting ones must wake on a push.

gunicorn runs against this test's own (transactional) database, so the tokens are made
with manage.py in the server's environment, with its secrets."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from compliance.models import AuditEvent

from .processes import GUNICORN, database_url, free_port, production_env, serve
from .support import ON_POSTGRES

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not ON_POSTGRES,
        reason="long polls hold their thread on PostgreSQL (LISTEN); the attack was "
        "reported there: run with DATABASE_URL=postgres://...",
    ),
    pytest.mark.django_db(transaction=True),
]

ROOT = Path(settings.BASE_DIR)
#: Far more than the threads of the old gthread worker (8): each would have held one.
PULLS = 64
#: The family's cap on this server: the pulls past it come back at once.
FAMILY_CAP = 48
WAIT_SECONDS = 20
#: What the issue asks of another tenant's call while one token long-polls.
ANSWER_WITHIN_SECONDS = 1.0
#: A client gives up well before a starved call would be answered (the test fails
#: instead of hanging).
CLIENT_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Reply:
    status: int
    retry_after: str | None
    body: Any
    seconds: float


@dataclass(frozen=True)
class Server:
    port: int
    env: dict[str, str]
    master_pid: int

    def worker_threads(self) -> int:
        """How many threads the (one) worker process runs."""
        children = Path(f"/proc/{self.master_pid}/task/{self.master_pid}/children")
        [worker] = children.read_text().split()
        return len(list(Path(f"/proc/{worker}/task").iterdir()))

    def call(
        self, method: str, path: str, token: str = "", body: Any = None, timeout: float = 5.0
    ) -> Reply:
        started = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            headers = {"Content-Type": "application/json"}
            if token:
                headers["Authorization"] = f"Bearer {token}"
            payload = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            raw = response.read()
            return Reply(
                response.status,
                response.getheader("Retry-After"),
                json.loads(raw) if raw else None,
                time.monotonic() - started,
            )
        finally:
            conn.close()

    def create_token(self, name: str, rule: str) -> str:
        done = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), "create_token", name, f"--allow={rule}"],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.strip().splitlines()[-1]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    env = production_env(
        database_url=database_url(),
        static_root=tmp_path / "static",  # the API needs none
        without=("GUNICORN_", "LONG_POLL_"),
        GUNICORN_BIND=f"127.0.0.1:{port}",
        GUNICORN_WORKERS="1",
        LONG_POLL_MAX_WAITERS_PER_FAMILY=str(FAMILY_CAP),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
        TMPDIR=str(tmp_path),
    )
    # Stopped before pytest-django empties the database: it holds connections to it.
    with serve(GUNICORN, env=env, port=port, log=tmp_path / "gunicorn.log") as served:
        yield Server(port, env, served.process.pid)


def test_one_tokens_long_polls_hold_no_thread_and_leave_room_for_everyone_else(
    server: Server,
) -> None:
    greedy = server.create_token("greedy", "greedy:*=pull")
    other = server.create_token("other", "other:*=push,pull,ack")
    waker = server.create_token("waker", "greedy:*=push")
    threads_before = server.worker_threads()

    def long_poll(_: int) -> Reply:
        return server.call(
            "POST",
            "/api/v1/queues/greedy:q/pull",
            greedy,
            {"wait": WAIT_SECONDS},
            timeout=WAIT_SECONDS + 10,
        )

    with ThreadPoolExecutor(max_workers=PULLS) as pool:
        polls = [pool.submit(long_poll, index) for index in range(PULLS)]
        time.sleep(2)  # every pull has reached the server and is waiting, or answered
        threads_waiting = server.worker_threads()
        pushed = server.call(
            "POST",
            "/api/v1/queues/other:q/jobs",
            other,
            {"data": {"n": 1}},
            timeout=CLIENT_TIMEOUT_SECONDS,
        )
        pulled = server.call(
            "POST", "/api/v1/queues/other:q/pull", other, {}, timeout=CLIENT_TIMEOUT_SECONDS
        )
        [leased] = pulled.body["jobs"]
        acked = server.call(
            "POST",
            f"/api/v1/jobs/{leased['id']}/ack",
            other,
            {"lease_id": leased["lease_id"]},
            timeout=CLIENT_TIMEOUT_SECONDS,
        )
        ready = server.call("GET", "/readyz", timeout=CLIENT_TIMEOUT_SECONDS)
        # The waiting ones are woken by work, so the test does not sit out their wait.
        for _ in range(FAMILY_CAP):
            server.call("POST", "/api/v1/queues/greedy:q/jobs", waker, {"data": {"n": 2}})
        replies = [poll.result(timeout=WAIT_SECONDS + 15) for poll in polls]

    for call in (pushed, pulled, acked, ready):
        assert call.status in (200, 201), call
        assert call.seconds < ANSWER_WITHIN_SECONDS, call
    # No thread per wait: the worker's thread pool and its listener, not 48 more.
    assert threads_waiting < threads_before + 16, (threads_before, threads_waiting)

    # At most FAMILY_CAP waiters of the family; the rest came back at once, empty, with
    # Retry-After. Every waiter was woken by a push and got one job.
    over_cap = [reply for reply in replies if reply.retry_after is not None]
    waited = [reply for reply in replies if reply.retry_after is None]
    assert len(over_cap) == PULLS - FAMILY_CAP, replies
    for reply in over_cap:
        assert reply.status == 200 and reply.body == {"jobs": []}, reply
        assert int(reply.retry_after or 0) >= 1
        assert reply.seconds < ANSWER_WITHIN_SECONDS + 1, reply
    assert len(waited) == FAMILY_CAP
    for reply in waited:
        assert reply.status == 200 and len(reply.body["jobs"]) == 1, reply
        assert reply.seconds < WAIT_SECONDS, reply


def _hold_open_pull(server: Server, token: str, queue: str) -> socket.socket:
    """A waiting pull on a raw connection of its own, whose answer is never read."""
    body = json.dumps({"wait": WAIT_SECONDS}).encode()
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    raw.sendall(
        f"POST /api/v1/queues/{queue}/pull HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    return raw


def test_a_client_that_hangs_up_gives_its_slot_back_at_once(server: Server) -> None:
    """Under ASGI the server sees the hang-up: the wait is cancelled, its slot and its
    wake-up registration given back, and the call still gets its one pull event."""
    greedy = server.create_token("greedy", "greedy:*=pull")
    held = [_hold_open_pull(server, greedy, "greedy:q") for _ in range(FAMILY_CAP)]
    try:
        time.sleep(2)  # every one of them is waiting (a pull checking sooner could take
        # a slot one of them then misses)
        full = server.call("POST", "/api/v1/queues/greedy:q/pull", greedy, {"wait": 1})
        assert full.retry_after is not None, full
        held.pop().close()
        deadline = time.monotonic() + 5
        while True:
            reply = server.call("POST", "/api/v1/queues/greedy:q/pull", greedy, {"wait": 0.5})
            if reply.retry_after is None:
                break  # the slot came back: this one waited its 0.5 s
            assert time.monotonic() < deadline, "the hung-up pull kept its slot"
            time.sleep(0.1)
        assert reply.status == 200 and reply.body == {"jobs": []} and reply.seconds >= 0.5
    finally:
        for raw in held:
            raw.close()
    deadline = time.monotonic() + 10
    while not AuditEvent.objects.filter(action="pull", details__client="disconnected").exists():
        assert time.monotonic() < deadline, "the hung-up pull was not audited"
        time.sleep(0.1)


def test_a_waiting_pull_and_a_job_wait_wake_on_the_push_and_the_ack(server: Server) -> None:
    worker = server.create_token("worker", "work:*=push,pull,ack,getJob")
    with ThreadPoolExecutor(max_workers=2) as pool:
        waiting = pool.submit(
            server.call,
            "POST",
            "/api/v1/queues/work:q/pull",
            worker,
            {"wait": WAIT_SECONDS},
            WAIT_SECONDS + 10,
        )
        time.sleep(0.5)
        pushed = server.call("POST", "/api/v1/queues/work:q/jobs", worker, {"data": {"n": 1}})
        woken = waiting.result(timeout=WAIT_SECONDS)
        assert woken.status == 200 and [job["id"] for job in woken.body["jobs"]] == [
            pushed.body["id"]
        ]
        assert woken.seconds < WAIT_SECONDS / 2, woken  # woken, not timed out
        [leased] = woken.body["jobs"]
        finished = pool.submit(
            server.call,
            "GET",
            f"/api/v1/jobs/{leased['id']}/wait?timeout_ms={WAIT_SECONDS * 1000}",
            worker,
            None,
            WAIT_SECONDS + 10,
        )
        time.sleep(0.5)
        acked = server.call(
            "POST", f"/api/v1/jobs/{leased['id']}/ack", worker, {"lease_id": leased["lease_id"]}
        )
        assert acked.status == 200, acked
        answer = finished.result(timeout=WAIT_SECONDS)
    assert answer.status == 200 and answer.body["finished"] is True, answer
    assert answer.seconds < WAIT_SECONDS / 2, answer


def test_a_job_wait_whose_client_hangs_up_ends_at_once_with_its_event(server: Server) -> None:
    """The wait is cancelled as soon as its client goes: its one waitJob event is
    written then, not when its 20 s would have run out."""
    token = server.create_token("waiter", "w:*=push,getJob")
    pushed = server.call("POST", "/api/v1/queues/w:q/jobs", token, {"data": {"n": 1}})
    job_id = pushed.body["id"]
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    raw.sendall(
        f"GET /api/v1/jobs/{job_id}/wait?timeout_ms={WAIT_SECONDS * 1000} HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    )
    time.sleep(1)  # it waits
    assert not AuditEvent.objects.filter(action="waitJob").exists()
    raw.close()
    hung_up = time.monotonic()
    while not AuditEvent.objects.filter(action="waitJob").exists():
        assert time.monotonic() - hung_up < WAIT_SECONDS / 2, "the hang-up was not seen"
        time.sleep(0.1)
    [event] = AuditEvent.objects.filter(action="waitJob")
    assert event.details == {"finished": False}
