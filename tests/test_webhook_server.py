"""Webhooks with the real processes: gunicorn with production settings and ``manage.py
run_webhooks`` on one PostgreSQL database, and a loopback HTTPS receiver in this test
reached through WEBHOOK_ALLOWED_HOSTS. A push and an ack over HTTP arrive signed; a
receiver answering 500 gets retries, then the webhook is disabled; the sender stops
cleanly on SIGTERM."""

from __future__ import annotations

import json
import secrets
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from flashq_client import verify_signature

from kernel.limits import WEBHOOK_QUEUE

from .processes import database_url, free_port, production_env, running, serve
from .support import ON_POSTGRES
from .test_scale_out import Deployment, Server, _admin_connection, _drop_database, call
from .webhookreceiver import Receiver
from .webhookreceiver import serve as receive

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not ON_POSTGRES,
        reason="the server and the sender share a database: run with DATABASE_URL=postgres://...",
    ),
]
MANAGE = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    yield from receive(tmp_path)


@pytest.fixture
def deployment(tmp_path: Path, receiver: Receiver) -> Iterator[Deployment]:
    name = f"flashq_hooks_{secrets.token_hex(6)}"
    with _admin_connection() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    env = production_env(
        database_url=database_url(name),
        static_root=tmp_path / "static",
        WEBHOOK_ALLOWED_HOSTS="127.0.0.1/32",
        WEBHOOK_CA_BUNDLE=str(receiver.ca_file),
        WEBHOOK_MAX_FAILURES="3",
        WEBHOOK_DISABLE_AFTER_SECONDS="0",
        WEBHOOK_RETRY_DELAY_MS="1",
    )
    try:
        deployment = Deployment(Server("A", free_port()), Server("B", 0), env)
        deployment.manage("migrate", "-v", "0")
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        argv = [gunicorn, "--bind", f"127.0.0.1:{deployment.a.port}", "--workers", "1"]
        with serve(
            [*argv, "flashq_project.wsgi"],
            env=env,
            port=deployment.a.port,
            log=tmp_path / "gunicorn.log",
        ):
            yield deployment
    finally:
        _drop_database(name)


def _wait(done: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _webhook_state(deployment: Deployment) -> tuple[bool, int]:
    with psycopg.connect(deployment.env["DATABASE_URL"]) as conn:
        row = conn.execute("SELECT enabled, consecutive_failures FROM queues_webhook").fetchone()
    assert row is not None
    return bool(row[0]), int(row[1])


def test_deliveries_retries_disable_and_a_clean_stop(
    deployment: Deployment, receiver: Receiver, tmp_path: Path
) -> None:
    token = deployment.create_token("hooks", "jobs:*=*,admin")
    hook = {"url": receiver.url(), "events": ["pushed", "completed"]}
    put = call(deployment.a, "PUT", "/queues/jobs:q/webhooks/h", token, hook)
    assert put.status == 201, put.body
    secret = put.body["secret"]
    log = tmp_path / "webhooks.log"
    with running([*MANAGE, "run_webhooks"], env=deployment.env, log=log) as sender:
        job = call(deployment.a, "POST", "/queues/jobs:q/jobs", token, {"data": {"n": 1}})
        pulled = call(deployment.a, "POST", "/queues/jobs:q/pull", token, {"count": 1})
        [held] = pulled.body["jobs"]
        ack = {"lease_id": held["lease_id"]}
        assert call(deployment.a, "POST", f"/jobs/{job.body['id']}/ack", token, ack).status == 200
        _wait(lambda: len(receiver.requests) >= 2)
        kinds = []
        for request in receiver.requests:
            verify_signature(secret, request.headers["X-Flashq-Signature"], request.body)
            kinds.append(json.loads(request.body)["kind"])
        assert kinds == ["pushed", "completed"]

        receiver.status = 500
        call(deployment.a, "POST", "/queues/jobs:q/jobs", token, {"data": {"n": 2}})
        _wait(lambda: not _webhook_state(deployment)[0])
        assert len(receiver.requests) == 2 + 3  # three failed attempts, then disabled
        sender.process.send_signal(signal.SIGTERM)
        assert sender.process.wait(timeout=15) == 0
    assert "Stopped; delivered 2." in log.read_text()


def _deliveries(deployment: Deployment) -> list[tuple[str, bool]]:
    """(state, leased) of each delivery job of the internal queue: leased is a lease id
    on an active job (a completed one keeps the lease that acked it, for repeats)."""
    with psycopg.connect(deployment.env["DATABASE_URL"]) as conn:
        rows = conn.execute(
            "SELECT j.state, j.state = 'active' AND j.lease_id IS NOT NULL FROM queues_job j"
            " JOIN queues_queue q ON q.id = j.queue_id WHERE q.name = %s ORDER BY j.state",
            (WEBHOOK_QUEUE,),
        ).fetchall()
    return [(str(state), bool(leased)) for state, leased in rows]


def test_sigterm_mid_pass_waits_for_one_delivery_and_releases_the_rest(
    deployment: Deployment, receiver: Receiver, tmp_path: Path
) -> None:
    """A pass leases up to ten deliveries: SIGTERM during the first stops the sender
    after that one (a 2 s receiver here), the others given back at once, not sent."""
    token = deployment.create_token("hooks", "jobs:*=*,admin")
    hook = {"url": receiver.url(), "events": ["pushed"]}
    assert call(deployment.a, "PUT", "/queues/jobs:q/webhooks/h", token, hook).status == 201
    for n in range(4):
        call(deployment.a, "POST", "/queues/jobs:q/jobs", token, {"data": {"n": n}})
    receiver.delay = 2.0
    log = tmp_path / "webhooks.log"
    with running([*MANAGE, "run_webhooks"], env=deployment.env, log=log) as sender:
        _wait(lambda: len(receiver.requests) >= 1)
        stopped = time.monotonic()
        sender.process.send_signal(signal.SIGTERM)
        assert sender.process.wait(timeout=10) == 0
        assert time.monotonic() - stopped < 4
    assert len(receiver.requests) == 1
    assert sorted(_deliveries(deployment)) == [
        ("completed", False),
        ("waiting", False),
        ("waiting", False),
        ("waiting", False),
    ]
