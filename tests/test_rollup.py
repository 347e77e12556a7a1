"""The per-minute rollup (queues.statsmodels, migration 0025's triggers, queues.rollup):
each push, completion, failure and retry counted in the changing transaction, history
that a retry, retention or an erasure never rewrites, run-time percentiles from the
histogram, and the scheduler's fold and prune."""

from __future__ import annotations

import importlib
import time
import uuid
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.db.models import Sum
from django.test import override_settings
from django.utils import timezone

from kernel.limits import INTERNAL_QUEUE_PREFIX
from queues import pulling, rollup, services
from queues.jobspec import JobSpec
from queues.models import Job, JobMinute, JobState, Queue
from queues.statsmodels import BUCKET_LOWER_MS, BUCKETS, COUNTS, HISTOGRAM

from .support import SETUP, Api, in_a_thread, make_token, postgres_only, pull, push

pytestmark = pytest.mark.django_db


def _totals(queue: str = "jobs:q") -> dict[str, int]:
    found = Queue.objects.filter(name=queue).first()
    rows = JobMinute.objects.filter(queue_id=found.pk if found else -1)
    sums = rows.aggregate(**{name: Sum(name) for name in (*COUNTS, "run_ms", *HISTOGRAM)})
    return {name: int(value or 0) for name, value in sums.items()}


def test_push_ack_fail_and_retry_are_each_counted_once(api: Api) -> None:
    token = make_token("svc", "jobs:*=*")
    done, failing, flaky = (push(api, token, max_attempts=n)["id"] for n in (1, 1, 2))
    assert _totals() == {**_totals(), "pushed": 3, "completed": 0, "failed": 0, "retried": 0}
    held = {job["id"]: job["lease_id"] for job in pull(api, token, count=3)}
    api.post(f"/jobs/{done}/ack", {"lease_id": held[done], "result": {}}, as_=token)
    api.post(f"/jobs/{failing}/fail", {"lease_id": held[failing], "error": "x"}, as_=token)
    # An attempt left: back to waiting, a retry.
    api.post(f"/jobs/{flaky}/fail", {"lease_id": held[flaky], "error": "x"}, as_=token)
    totals = _totals()
    assert (totals["pushed"], totals["completed"], totals["failed"], totals["retried"]) == (
        3,
        1,
        1,
        1,
    )
    # The one completed job's run time is in the histogram.
    assert sum(totals[name] for name in HISTOGRAM) == 1
    failed = Job.objects.get(id=failing)
    assert failed.failed_at is not None and failed.failed_at == failed.finished_at
    assert Job.objects.get(id=flaky).failed_at is None  # an attempt failed, not the job


def test_retrying_failed_jobs_never_lowers_the_failures_counted() -> None:
    ids = [_failed_job() for _ in range(3)]
    failed_at = {job.id: job.failed_at for job in Job.objects.filter(id__in=ids)}
    assert _totals("mail")["failed"] == 3
    for job_id in ids:
        services.job_retry(job_id=job_id, actor=SETUP, reason="fixed")
    totals = _totals("mail")
    assert (totals["failed"], totals["retried"]) == (3, 3)
    # The job keeps when it last failed, so the dashboard's failure links still find it.
    assert {job.id: job.failed_at for job in Job.objects.filter(id__in=ids)} == failed_at
    assert set(Job.objects.filter(id__in=ids).values_list("state", flat=True)) == {"waiting"}


def test_a_rolled_back_change_counts_nothing() -> None:
    Queue.objects.create(name="jobs:q")
    with pytest.raises(RuntimeError), transaction.atomic():
        services.job_push(queue_name="jobs:q", spec=JobSpec(data={}), owner="t", actor=SETUP)
        assert _totals()["pushed"] == 1  # written in the pushing transaction
        raise RuntimeError("half way")
    assert _totals()["pushed"] == 0 and not Job.objects.exists()


def test_internal_queues_count_nothing() -> None:
    name = f"{INTERNAL_QUEUE_PREFIX}deliveries"
    Queue.objects.create(name=name)
    services.job_push(queue_name=name, spec=JobSpec(data={}), owner="t", actor=SETUP)
    assert not JobMinute.objects.exists()


def test_a_run_time_lands_in_its_bucket_in_the_minute_it_finished() -> None:
    job = services.job_push(queue_name="jobs:q", spec=JobSpec(data={}), owner="t", actor=SETUP).job
    started = datetime(2026, 3, 1, 12, 30, 59, 500_000, tzinfo=UTC)
    finished = started + timedelta(milliseconds=1500)  # bucket 11: [1024, 2048) ms
    Job.objects.filter(id=job.id).update(
        state=JobState.COMPLETED, started_at=started, finished_at=finished
    )
    [row] = JobMinute.objects.filter(completed__gt=0)
    assert row.minute == datetime(2026, 3, 1, 12, 31, tzinfo=UTC)
    assert row.run_ms == 1500 and row.h11 == 1
    assert sum(getattr(row, name) for name in HISTOGRAM) == 1


def test_retention_and_erasure_leave_the_counts(api: Api) -> None:
    token = make_token("svc", "*=*,admin,erase")
    for n in range(2):
        push(api, token, data={"userId": "u-7", "n": n})
    push(api, token, queue="jobs:old")
    for job in pull(api, token, count=2):
        api.post(f"/jobs/{job['id']}/ack", {"lease_id": job["lease_id"], "result": {}}, as_=token)
    old = Job.objects.get(queue__name="jobs:old")
    Job.objects.filter(id=old.id).update(
        state=JobState.COMPLETED, finished_at=timezone.now() - timedelta(days=40)
    )
    before = {name: _totals(name) for name in ("jobs:q", "jobs:old")}
    call_command("retention_cleanup", stdout=StringIO())
    call_command("gdpr_erase", "u-7", "--execute", "--mode", "delete", "--reason", "DSR 1",
                 stdout=StringIO())  # fmt: skip
    assert not Job.objects.exists()
    assert {name: _totals(name) for name in ("jobs:q", "jobs:old")} == before
    assert before["jobs:q"]["completed"] == 2


def test_percentiles_read_the_histogram_within_a_bucket() -> None:
    histogram = [0] * BUCKETS
    histogram[11] = 10  # ten runs in [1024, 2048) ms
    assert rollup.percentile(histogram, 0.5) == pytest.approx(1024 + 1024 * 0.5)
    histogram[3] = 90  # ninety in [4, 8) ms: p50 there, p95 among the slow ones
    assert 4 <= (rollup.percentile(histogram, 0.5) or 0) < 8
    assert 1024 <= (rollup.percentile(histogram, 0.95) or 0) < 2048
    assert rollup.percentile([0] * BUCKETS, 0.5) is None
    last = [0] * (BUCKETS - 1) + [1]
    assert rollup.percentile(last, 0.95) == BUCKET_LOWER_MS[-1]


def test_the_migration_and_the_model_agree_on_the_buckets() -> None:
    migration = importlib.import_module("queues.migrations.0025_job_minutes")
    assert migration.BUCKETS == BUCKETS and list(HISTOGRAM) == migration.H
    assert [0, *migration.BOUNDS] == list(BUCKET_LOWER_MS)


@override_settings(FLASHQ_STATS_DAYS=8)
def test_the_prune_drops_minutes_past_the_window() -> None:
    now = timezone.now()
    for days in (9, 7):
        JobMinute.objects.create(queue_id=1, minute=_minute(now - timedelta(days=days)), pushed=1)
    assert rollup.rollup_prune(now=now)[1] == 1
    assert [row.pushed for row in JobMinute.objects.all()] == [1]


@postgres_only
def test_the_prune_folds_the_writers_stripes_of_past_minutes() -> None:
    now = timezone.now()
    old, recent = _minute(now - timedelta(minutes=5)), _minute(now)
    for stripe, pushed in ((0, 1), (4711, 2), (4712, 3)):
        JobMinute.objects.create(
            queue_id=1, minute=old, stripe=stripe, pushed=pushed, h03=stripe % 2
        )
    JobMinute.objects.create(queue_id=1, minute=recent, stripe=4711, pushed=5)
    rollup.rollup_prune(now=now)
    rows = {(row.minute, row.stripe): row for row in JobMinute.objects.all()}
    assert set(rows) == {(old, 0), (recent, 4711)}  # the current minute is left alone
    assert (rows[(old, 0)].pushed, rows[(old, 0)].h03) == (6, 1)


@postgres_only
def test_concurrent_writers_each_write_their_own_stripe() -> None:
    """A push counts in its backend's own row, not in one every writer shares."""
    services.job_push(queue_name="jobs:q", spec=JobSpec(data={}), owner="t", actor=SETUP)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        [pid] = cursor.fetchone()
    assert list(JobMinute.objects.values_list("stripe", flat=True)) == [pid]


def _minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def _failed_job() -> uuid.UUID:
    job = services.job_push(
        queue_name="mail", spec=JobSpec(data={}, max_attempts=1), owner="family:t", actor=SETUP
    ).job
    [leased] = pulling.jobs_pull(
        queue_name="mail", count=1, lease_seconds=30, owner="family:t", actor=SETUP
    )
    assert leased.lease_id is not None
    services.job_fail(
        job_id=leased.id,
        lease_id=leased.lease_id,
        owner="family:t",
        error="x",
        retry=False,
        actor=SETUP,
    )
    return job.id


def test_a_statement_changing_many_jobs_counts_each_once() -> None:
    """One statement, many rows: PostgreSQL's trigger runs once over all of them."""
    Queue.objects.create(name="jobs:q")
    Queue.objects.create(name="mail")
    for queue in ("jobs:q", "mail"):
        services.jobs_push(
            queue_name=queue, specs=[JobSpec(data={"n": n}) for n in range(50)], owner="t",
            actor=SETUP,
        )  # fmt: skip
    now = timezone.now()
    Job.objects.filter(queue__name="jobs:q").update(
        state=JobState.COMPLETED, started_at=now - timedelta(milliseconds=300), finished_at=now
    )
    Job.objects.filter(queue__name="mail").update(state=JobState.ACTIVE)  # counts nothing
    Job.objects.filter(queue__name="mail").update(state=JobState.WAITING)  # 50 retries
    assert _totals("jobs:q") == {**_totals("jobs:q"), "pushed": 50, "completed": 50}
    assert _totals("jobs:q")["h09"] == 50  # [256, 512) ms
    assert (_totals("mail")["pushed"], _totals("mail")["retried"]) == (50, 50)


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_push_never_waits_for_another_writers_open_transaction() -> None:
    """One transaction has pushed to a queue and not committed: another push to the same
    queue, in the same minute, commits at once (its own row), and both count."""
    Queue.objects.create(name="jobs:q")

    def push_alone() -> float:
        started = time.monotonic()
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '2s'")
        services.job_push(queue_name="jobs:q", spec=JobSpec(data={}), owner="t", actor=SETUP)
        return time.monotonic() - started

    with transaction.atomic():
        services.job_push(queue_name="jobs:q", spec=JobSpec(data={}), owner="t", actor=SETUP)
        assert in_a_thread(push_alone) < 1.5
    assert _totals()["pushed"] == 2


def test_a_lease_lost_on_the_last_attempt_is_a_failure_with_its_time() -> None:
    job = services.job_push(
        queue_name="jobs:q", spec=JobSpec(data={}, max_attempts=1), owner="t", actor=SETUP
    ).job
    pulling.jobs_pull(queue_name="jobs:q", count=1, lease_seconds=30, owner="t", actor=SETUP)
    Job.objects.filter(id=job.id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    pulling.sweep(actor=SETUP)
    job.refresh_from_db()
    assert job.state == JobState.FAILED and job.failed_at == job.finished_at
    assert _totals()["failed"] == 1


@postgres_only
def test_the_triggers_never_compile_their_plans_on_postgresql() -> None:
    """PostgreSQL sizes transition tables at a guessed 10,000 rows, which put the
    rollup's plans past jit_above_cost: each statement compiled its plan first (55-70 ms
    of a batch ack's 60-115 ms under auto_explain, where the trigger now takes well under
    one). The functions carry ``jit = off`` whatever the server's setting."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT proname, proconfig FROM pg_proc "
            "WHERE proname IN ('flashq_minutes_insert', 'flashq_minutes_update')"
        )
        config = dict(cursor.fetchall())
    assert set(config) == {"flashq_minutes_insert", "flashq_minutes_update"}
    assert all("jit=off" in (settings or []) for settings in config.values()), config


def test_a_pull_counts_nothing(api: Api) -> None:
    token = make_token("svc", "jobs:*=*")
    push(api, token, data={"n": 1})
    before = _totals()
    [job] = pull(api, token, count=1)
    assert job and _totals() == before
