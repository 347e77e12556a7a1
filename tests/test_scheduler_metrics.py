"""The scheduler's counters: what qcluster's worker processes change (here the ttl
expiry of the lease sweeper) is served on SCHEDULER_METRICS_PORT, summed over its
processes, since the app servers' /metrics cannot see it."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

from .processes import free_port, production_env, serve, tail

pytestmark = pytest.mark.e2e

PREPARE = """
from datetime import timedelta
from django.utils import timezone
from django_q.tasks import async_task
from compliance.audit import Actor
from queues import services
from queues.jobspec import JobSpec
from queues.models import Job
services.job_push(queue_name="sched:q", spec=JobSpec(data={"n": 1}, ttl_ms=60_000),
                  owner="o", actor=Actor.command("test"))
Job.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
async_task("compliance.tasks.sweep_leases")
"""


def _scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            return str(answer.read().decode())
    except OSError:
        return ""


def test_the_sweepers_expiries_are_served_by_the_scheduler(tmp_path: Path) -> None:
    port = free_port()
    env = production_env(
        database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        static_root=tmp_path / "static",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
        SCHEDULER_METRICS_PORT=str(port),
        SCHEDULER_METRICS_BIND="127.0.0.1",
    )
    manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]
    for args in (["migrate", "-v", "0"], ["shell", "-c", PREPARE]):
        subprocess.run([*manage, *args], env=env, cwd=settings.BASE_DIR, check=True)
    log = tmp_path / "qcluster.log"
    # Ready once its metrics server answers; the expiry is counted some time later.
    with serve([*manage, "qcluster"], env=env, port=port, log=log, health="/metrics") as cluster:
        wanted = 'flashq_jobs_expired_total{queue="(several)"} 1.0'
        deadline = time.monotonic() + 60
        while wanted not in (text := _scrape(port)) and time.monotonic() < deadline:
            assert cluster.process.poll() is None, tail(log)
            time.sleep(0.2)
        assert wanted in text, tail(log)
        assert "flashq_audit_events_total" in text
