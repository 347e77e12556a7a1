"""Exactly one job per tick with the real processes racing: two gunicorn servers (which
workers pull and ack from, so finished jobs free their keys and only the engine's lock
stands between a tick and a second job) and two ``manage.py run_scheduler`` processes on
one PostgreSQL database, for 30 s of a 1-second schedule; one scheduler is killed with
SIGKILL half way (mid-tick or not) and restarted. Also: ``--once`` fires what is due,
and a scheduler stops cleanly on SIGTERM."""

from __future__ import annotations

import secrets
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime, timedelta
from io import StringIO
from itertools import pairwise
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.core.management import call_command
from django.db.models import F
from django.utils import timezone

from compliance.models import AuditEvent
from queues.models import Job
from queues.models import Schedule as RepeatingJob

from .processes import database_url, free_port, production_env, running, serve
from .support import ON_POSTGRES, Api
from .test_scale_out import Deployment, Server, _admin_connection, _drop_database, call

RACE_SECONDS = 30
MANAGE = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]


@pytest.mark.django_db
def test_run_scheduler_once_fires_what_is_due(api: Api, full: str) -> None:
    body = {"every_ms": 60_000, "data": {"n": 1}}
    assert api.request("PUT", "/queues/jobs:o/schedules/m", body, as_=full).status == 201
    # Back one period: next_run_at is then the schedule's first tick, which is past (a
    # moment that is not a tick, such as "a second ago", may have no tick after it).
    RepeatingJob.objects.update(next_run_at=F("next_run_at") - timedelta(milliseconds=60_000))
    due = RepeatingJob.objects.get().next_run_at
    assert due is not None and due <= timezone.now()
    out = StringIO()
    call_command("run_scheduler", "--once", stdout=out)
    assert out.getvalue().strip() == "Fired 1 job(s)."
    assert Job.objects.filter(key__startswith="schedule:m:").count() == 1
    event = AuditEvent.objects.get(action="schedule.fire")
    assert event.actor == "system:scheduler" and event.job_ids


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("schedule-race")
    name = f"flashq_schedrace_{secrets.token_hex(6)}"
    with _admin_connection() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    env = production_env(database_url=database_url(name), static_root=root / "static")
    try:
        deployment = Deployment(Server("A", free_port()), Server("B", free_port()), env)
        deployment.manage("migrate", "-v", "0")
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        with ExitStack() as servers:
            for server in deployment.servers:
                argv = [gunicorn, "--bind", f"127.0.0.1:{server.port}", "--workers", "1"]
                argv += ["flashq_project.wsgi"]
                log = root / f"gunicorn-{server.name}.log"
                servers.enter_context(serve(argv, env=env, port=server.port, log=log))
            yield deployment
    finally:
        _drop_database(name)


def _work(deployment: Deployment, token: str, stop: threading.Event) -> None:
    """A worker pulling and acking through both servers in turn."""
    turn = 0
    while not stop.is_set():
        server = deployment.servers[turn % 2]
        turn += 1
        reply = call(server, "POST", "/queues/race/pull", token, {"count": 10, "wait": 1})
        for job in reply.body.get("jobs", []) if reply.status == 200 else []:
            call(server, "POST", f"/jobs/{job['id']}/ack", token, {"lease_id": job["lease_id"]})


@pytest.mark.e2e
@pytest.mark.skipif(
    not ON_POSTGRES,
    reason="racing processes share a schedule only through PostgreSQL: run with "
    "DATABASE_URL=postgres://...",
)
def test_racing_schedulers_make_exactly_one_job_per_tick(
    deployment: Deployment, tmp_path: Path
) -> None:
    token = deployment.create_token("racer", "race=*")
    body = {"every_ms": 1000, "data": {"n": 1}, "catch_up": "all", "max_catch_up": 1000}
    put = call(deployment.a, "PUT", "/queues/race/schedules/tick", token, body)
    assert put.status == 201, put.body
    scheduler = [*MANAGE, "run_scheduler"]
    stop = threading.Event()
    worker = threading.Thread(target=_work, args=(deployment, token, stop))
    worker.start()
    try:
        with running(scheduler, env=deployment.env, log=tmp_path / "b.log") as b:
            with running(scheduler, env=deployment.env, log=tmp_path / "a.log") as a:
                time.sleep(RACE_SECONDS / 2)
                a.process.send_signal(signal.SIGKILL)  # wherever it is, mid-tick or not
                a.process.wait(timeout=10)
            with running(scheduler, env=deployment.env, log=tmp_path / "a.log"):
                time.sleep(RACE_SECONDS / 2)
            b.process.send_signal(signal.SIGTERM)
            assert b.process.wait(timeout=10) == 0
            assert "Stopped; fired" in (tmp_path / "b.log").read_text()
    finally:
        stop.set()
        worker.join(timeout=30)
    with psycopg.connect(deployment.env["DATABASE_URL"]) as conn:
        keys = [
            key
            for (key,) in conn.execute(
                "SELECT j.key FROM queues_job j JOIN queues_queue q ON q.id = j.queue_id "
                "WHERE q.name = 'race'"
            )
        ]
    counts = Counter(keys)
    assert all(count == 1 for count in counts.values()), counts.most_common(3)
    moments = sorted(_tick(key) for key in counts)
    assert len(moments) >= RACE_SECONDS - 5, len(moments)
    gaps = [later - earlier for earlier, later in pairwise(moments)]
    assert set(gaps) == {timedelta(seconds=1)}, Counter(gaps)


def _tick(key: str) -> datetime:
    """The tick of ``schedule:tick:2026-12-06T11:30:01Z``."""
    return datetime.fromisoformat(key.removeprefix("schedule:tick:").replace("Z", "+00:00"))
