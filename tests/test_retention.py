"""Retention: policies per queue pattern and state (most specific wins), a dry run that
changes nothing, batches that are each done and recorded or not started, legal holds,
the clean endpoint with per-queue rights, and the audit trail's own retention."""

from __future__ import annotations

import uuid
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from compliance import retention
from compliance.audit import Actor
from compliance.models import AuditEvent, RetentionPolicy
from kernel.limits import WEBHOOK_QUEUE
from queues import services
from queues.models import Job, JobState, Queue

from .support import SETUP, Api, make_token, push

pytestmark = pytest.mark.django_db


def _finished(api: Api, token: str, queue: str, state: str, days: int, count: int = 1) -> list[str]:
    """``count`` jobs of ``queue`` in ``state``, finished ``days`` ago."""
    ids = [push(api, token, queue=queue, data={"n": i})["id"] for i in range(count)]
    moment = timezone.now() - timedelta(days=days)
    Job.objects.filter(id__in=ids).update(state=state, finished_at=moment)
    return ids


def _left(queue: str, state: str) -> int:
    return Job.objects.filter(queue__name=queue, state=state).count()


@pytest.fixture
def full(db: None) -> str:
    return make_token("full", "*=*,admin")


def test_the_defaults_are_installed() -> None:
    policies = {(p.queue_pattern, p.target): p.max_age_days for p in RetentionPolicy.objects.all()}
    assert policies == {
        ("*", "completed"): 30,
        ("*", "failed"): 90,
        ("*", "cancelled"): 30,
        ("*", "expired"): 30,
        ("*", "audit"): 90,
    }


def test_the_most_specific_policy_wins() -> None:
    RetentionPolicy.objects.create(queue_pattern="billing:*", target="completed", max_age_days=7)
    RetentionPolicy.objects.create(queue_pattern="billing:eu", target="completed", max_age_days=400)
    policies = list(RetentionPolicy.objects.all())
    assert retention.policy_for(policies, "billing:eu", "completed").max_age_days == 400  # type: ignore[union-attr]
    assert retention.policy_for(policies, "billing:us", "completed").max_age_days == 7  # type: ignore[union-attr]
    assert retention.policy_for(policies, "email", "completed").max_age_days == 30  # type: ignore[union-attr]
    # Webhook deliveries, out of every pattern's reach, are kept by the catch-all only.
    RetentionPolicy.objects.create(queue_pattern="_flashq.*", target="completed", max_age_days=1)
    policies = list(RetentionPolicy.objects.all())
    internal = retention.policy_for(policies, WEBHOOK_QUEUE, "completed")
    assert internal is not None and internal.queue_pattern == "*"


def test_dry_run_lists_what_would_go_and_changes_nothing(api: Api, full: str) -> None:
    _finished(api, full, "jobs:a", JobState.COMPLETED, days=31, count=2)
    _finished(api, full, "jobs:a", JobState.COMPLETED, days=29)
    _finished(api, full, "jobs:a", JobState.FAILED, days=31)  # failed: kept 90 days
    events = AuditEvent.objects.count()
    out = StringIO()
    call_command("retention_cleanup", "--dry-run", stdout=out)
    assert "jobs:a: would delete 2 completed job(s)" in out.getvalue()
    assert "Would delete 2 job(s) in all." in out.getvalue()
    assert _left("jobs:a", JobState.COMPLETED) == 3 and AuditEvent.objects.count() == events


def test_the_run_deletes_in_batches_each_recorded(api: Api, full: str) -> None:
    _finished(api, full, "jobs:a", JobState.COMPLETED, days=31, count=5)
    keep = _finished(api, full, "jobs:a", JobState.COMPLETED, days=29)
    _finished(api, full, "jobs:b", JobState.CANCELLED, days=40, count=2)
    out = StringIO()
    call_command("retention_cleanup", "--batch-size", "2", stdout=out)
    assert "jobs:a: deleted 5 completed job(s)" in out.getvalue()
    assert "Deleted 7 job(s) in all." in out.getvalue()
    assert list(Job.objects.filter(queue__name="jobs:a").values_list("id", flat=True)) == [
        uuid.UUID(keep[0])
    ]
    events = AuditEvent.objects.filter(action="clean").order_by("id")
    assert [sum(e.details["deleted"].get(e.queue, {}).values()) for e in events] == [2, 2, 1, 2]
    assert {e.actor for e in events} == {"command:retention_cleanup"}


def test_a_failure_between_batches_leaves_no_batch_half_done(
    api: Api, full: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _finished(api, full, "jobs:a", JobState.COMPLETED, days=31, count=5)
    real = services.jobs_clean
    calls = 0

    def fail_on_second_batch(**kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("injected: the database went away")
        return real(**kwargs)

    monkeypatch.setattr("compliance.retention.jobs_clean", fail_on_second_batch)
    with pytest.raises(RuntimeError, match="injected"):
        call_command("retention_cleanup", "--batch-size", "2", stdout=StringIO())
    assert _left("jobs:a", JobState.COMPLETED) == 3  # the first batch, whole, and no more
    [event] = AuditEvent.objects.filter(action="clean")
    assert event.details["deleted"] == {"jobs:a": {"completed": 2}}


def test_a_run_that_fails_part_way_still_says_what_it_did(
    api: Api, full: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command prints the batches that committed before the failure (a run over a big
    table is interrupted exactly when the operator most needs to know where it got)."""
    _finished(api, full, "jobs:a", JobState.COMPLETED, days=31, count=5)
    real = services.jobs_clean
    calls = 0

    def fail_on_third_batch(**kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("injected: the database went away")
        return real(**kwargs)

    monkeypatch.setattr("compliance.retention.jobs_clean", fail_on_third_batch)
    out = StringIO()
    with pytest.raises(RuntimeError, match="injected"):
        call_command("retention_cleanup", "--batch-size", "2", stdout=out)
    printed = out.getvalue()
    assert "jobs:a: deleted 4 completed job(s) finished before" in printed
    assert "Deleted 4 job(s) in all." in printed
    assert _left("jobs:a", JobState.COMPLETED) == 1


def test_a_failing_batch_rolls_back_entirely(
    api: Api, full: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside a batch the deletes and the event commit together or not at all."""
    _finished(api, full, "jobs:a", JobState.COMPLETED, days=31, count=3)

    def refuse(**kwargs: Any) -> None:
        raise RuntimeError("audit store unavailable")

    monkeypatch.setattr("queues.services.clean.audit_record", refuse)
    with pytest.raises(RuntimeError):
        call_command("retention_cleanup", stdout=StringIO())
    assert _left("jobs:a", JobState.COMPLETED) == 3


def test_queues_under_legal_hold_are_skipped_and_reported(api: Api, full: str) -> None:
    _finished(api, full, "jobs:held", JobState.COMPLETED, days=365, count=2)
    services.queue_set_legal_hold(name="jobs:held", hold=True, reason="case 42", actor=SETUP)
    out = StringIO()
    call_command("retention_cleanup", stdout=out)
    assert "jobs:held: under legal hold, skipped" in out.getvalue()
    assert _left("jobs:held", JobState.COMPLETED) == 2
    services.queue_set_legal_hold(name="jobs:held", hold=False, reason="case closed", actor=SETUP)
    call_command("retention_cleanup", stdout=StringIO())
    assert _left("jobs:held", JobState.COMPLETED) == 0
    holds = AuditEvent.objects.filter(action="queue.legalHold").order_by("id")
    assert [(e.details["hold"], e.details["reason"]) for e in holds] == [
        (True, "case 42"),
        (False, "case closed"),
    ]


def test_unfinished_jobs_are_never_cleaned(api: Api, full: str) -> None:
    old = push(api, full, queue="jobs:a")["id"]
    Job.objects.filter(id=old).update(created_at=timezone.now() - timedelta(days=400))
    call_command("retention_cleanup", stdout=StringIO())
    assert Job.objects.filter(id=old).exists()
    with pytest.raises(ValueError, match="only finished jobs"):
        services.jobs_clean(
            queues=list(Queue.objects.all()),
            states=[JobState.WAITING],
            finished_before_=timezone.now(),
            limit=10,
            actor=SETUP,
        )


# -- POST /queues/{pattern}/clean ----------------------------------------------------------


def test_clean_endpoint_maps_the_guides_clean_call(api: Api, full: str) -> None:
    _finished(api, full, "jobs:a", JobState.COMPLETED, days=31, count=3)
    _finished(api, full, "jobs:b", JobState.COMPLETED, days=31)
    _finished(api, full, "jobs:b", JobState.COMPLETED, days=1)
    _finished(api, full, "jobs:b", JobState.FAILED, days=31)
    body = {"grace_ms": 30 * 24 * 3600 * 1000, "state": "completed", "limit": 100}
    call = api.post("/queues/*/clean", body, as_=full)
    assert call.status == 200, call.body
    assert call.body == {
        "deleted": {"jobs:a": {"completed": 3}, "jobs:b": {"completed": 1}},
        "total": 4,
        "skipped": [],
        "held": [],
    }
    assert _left("jobs:b", JobState.COMPLETED) == 1 and _left("jobs:b", JobState.FAILED) == 1
    [event] = AuditEvent.objects.filter(action="clean")
    assert event.actor == "token:full" and event.details["states"] == ["completed"]


def test_clean_skips_queues_the_token_may_not_clean(api: Api, full: str) -> None:
    _finished(api, full, "jobs:a", JobState.COMPLETED, days=31)
    _finished(api, full, "jobs:b", JobState.COMPLETED, days=31)
    _finished(api, full, "secret:x", JobState.COMPLETED, days=31)
    cleaner = make_token("cleaner", "jobs:a=clean", "jobs:b=getJob")
    call = api.post("/queues/*/clean", {"grace_ms": 0}, as_=cleaner)
    assert call.status == 200, call.body
    assert call.body["deleted"] == {"jobs:a": {"completed": 1}}
    assert call.body["skipped"] == ["jobs:b"]  # secret:x is not even visible to it
    assert _left("jobs:b", JobState.COMPLETED) == 1 and _left("secret:x", JobState.COMPLETED) == 1
    only_view = make_token("viewer", "jobs:*=getJob")
    assert api.post("/queues/jobs:*/clean", {"grace_ms": 0}, as_=only_view).status == 403


def test_clean_limit_and_bad_input(api: Api, full: str) -> None:
    _finished(api, full, "jobs:a", JobState.COMPLETED, days=31, count=5)
    call = api.post("/queues/jobs:a/clean", {"grace_ms": 0, "limit": 2}, as_=full)
    assert call.body["total"] == 2 and _left("jobs:a", JobState.COMPLETED) == 3
    for body, path in [
        ({"grace_ms": -1}, "/grace_ms"),
        ({"grace_ms": 0, "state": "waiting"}, "/state"),
        ({"grace_ms": 0, "limit": 10_001}, "/limit"),
        ({}, "/grace_ms"),
    ]:
        bad = api.post("/queues/jobs:a/clean", body, as_=full)
        assert bad.status == 400 and bad.body["errors"][0]["path"] == path, bad.body
    assert api.post("/queues/bad pattern!/clean", {"grace_ms": 0}, as_=full).status == 400
    assert _left("jobs:a", JobState.COMPLETED) == 3


def test_audit_events_past_their_policy_are_retired(api: Api, full: str) -> None:
    from compliance.audit import chain, verification

    _finished(api, full, "jobs:a", JobState.COMPLETED, days=1)
    chain.seal_all()
    sealed = AuditEvent.objects.filter(seq__isnull=False).order_by("seq")
    first = sealed[0]
    # Sealed 100 days ago.
    from .test_audit_chain import _backdate

    _backdate([first], 100)
    out = StringIO()
    call_command("retention_cleanup", stdout=out)
    assert "Retired 1 audit event(s)" in out.getvalue()
    assert not AuditEvent.objects.filter(pk=first.pk).exists()
    assert verification.verify().ok


# -- retention_run, the service the command and the schedule call --------------------------

RUNNER = Actor.command("retention-test")


def _old_and_held(api: Api, full: str) -> tuple[str, AuditEvent]:
    """Test set-up: due jobs in two queues, a held queue, a waiting job past its ttl and
    a sealed audit event past the audit policy. Returns the ttl job and that event."""
    from compliance.audit import chain

    from .test_audit_chain import _backdate

    _finished(api, full, "jobs:a", JobState.COMPLETED, days=31, count=3)
    _finished(api, full, "jobs:b", JobState.FAILED, days=91)
    _finished(api, full, "jobs:held", JobState.COMPLETED, days=365)
    services.queue_set_legal_hold(name="jobs:held", hold=True, reason="case 7", actor=SETUP)
    stale = push(api, full, queue="jobs:a")["id"]
    Job.objects.filter(id=stale).update(expires_at=timezone.now() - timedelta(seconds=1))
    chain.seal_all()
    first = AuditEvent.objects.filter(seq__isnull=False).order_by("seq")[0]
    _backdate([first], 100)
    return stale, first


def test_retention_run_called_as_a_service_does_the_run_and_reports_it(api: Api, full: str) -> None:
    stale, first = _old_and_held(api, full)
    report = retention.retention_run(actor=RUNNER, batch_size=2)
    assert not report.dry_run and report.expired == 1 and report.held == ["jobs:held"]
    assert [(d.queue, d.state, d.count, d.max_age_days) for d in report.deleted] == [
        ("jobs:a", "completed", 3, 30),
        ("jobs:b", "failed", 1, 90),
    ]
    assert report.total == 4 and report.audit is not None and report.audit.count == 1
    assert Job.objects.get(id=stale).state == JobState.EXPIRED
    assert _left("jobs:a", JobState.COMPLETED) == 0 and _left("jobs:held", JobState.COMPLETED) == 1
    assert not AuditEvent.objects.filter(pk=first.pk).exists()
    run = AuditEvent.objects.filter(action__in=["ttl.expire", "clean", "audit.retire"])
    assert [(e.action, e.actor) for e in run.order_by("id")] == [
        ("ttl.expire", "command:retention-test"),
        ("clean", "command:retention-test"),  # jobs:a, a batch of 2
        ("clean", "command:retention-test"),  # jobs:a, the last one
        ("clean", "command:retention-test"),  # jobs:b
        ("audit.retire", "command:retention-test"),
    ]


def test_a_dry_run_changes_nothing_and_reports_what_the_run_then_does(api: Api, full: str) -> None:
    _old_and_held(api, full)
    jobs = sorted(Job.objects.values_list("id", "state"))
    events = sorted(AuditEvent.objects.values_list("id", "seq"))
    dry = retention.retention_run(actor=RUNNER, dry_run=True)
    assert sorted(Job.objects.values_list("id", "state")) == jobs
    assert sorted(AuditEvent.objects.values_list("id", "seq")) == events
    assert dry.dry_run and dry.expired is None and dry.held == ["jobs:held"]
    done = retention.retention_run(actor=RUNNER)
    assert [(d.queue, d.state, d.count) for d in dry.deleted] == [
        (d.queue, d.state, d.count) for d in done.deleted
    ]
    assert dry.total == done.total == 4
    assert dry.audit is not None and done.audit is not None
    assert dry.audit.count == done.audit.count == 1


def test_retention_run_refuses_a_batch_size_out_of_bounds_before_changing_anything(
    api: Api, full: str
) -> None:
    _finished(api, full, "jobs:a", JobState.COMPLETED, days=31)
    events = AuditEvent.objects.count()
    for size in (0, 10_001):
        with pytest.raises(ValueError, match="batch_size"):
            retention.retention_run(actor=RUNNER, batch_size=size)
    assert _left("jobs:a", JobState.COMPLETED) == 1 and AuditEvent.objects.count() == events


def test_a_batch_is_one_delete_that_reads_no_payloads_and_takes_its_dependency_rows(
    api: Api, full: str
) -> None:
    """Issue 24: ``QuerySet.delete()`` fetched every row of the batch (sealed payloads
    too) and deleted them 100 ids a statement; the rows that point at a deleted job (as
    the job or as what it depended on) still go with it."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from queues.models import DependencyKind, JobDependency

    gone = _finished(api, full, "jobs:a", JobState.COMPLETED, days=31, count=250)
    [kept] = _finished(api, full, "jobs:a", JobState.COMPLETED, days=1)
    waiting = push(api, full, queue="jobs:b")["id"]
    JobDependency.objects.create(
        job_id=gone[0], depends_on_id=gone[1], kind=DependencyKind.DEPENDENCY
    )
    JobDependency.objects.create(
        job_id=waiting, depends_on_id=gone[2], kind=DependencyKind.DEPENDENCY
    )
    JobDependency.objects.create(job_id=waiting, depends_on_id=kept, kind=DependencyKind.DEPENDENCY)
    with CaptureQueriesContext(connection) as queries:
        cleaned = services.jobs_clean(
            queues=[Queue.objects.get(name="jobs:a")],
            states=[JobState.COMPLETED],
            finished_before_=timezone.now() - timedelta(days=30),
            limit=1000,
            actor=SETUP,
        )
    assert cleaned.total == 250
    statements = [q["sql"] for q in queries.captured_queries]
    assert sum(s.startswith('DELETE FROM "queues_job"') for s in statements) == 1
    assert not any('"queues_job"."data"' in s for s in statements)
    assert list(Job.objects.filter(queue__name="jobs:a").values_list("id", flat=True)) == [
        uuid.UUID(kept)
    ]
    assert list(JobDependency.objects.values_list("job_id", "depends_on_id")) == [
        (uuid.UUID(waiting), uuid.UUID(kept))
    ]


@pytest.fixture
def rests(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The rests a run takes; each batch's clock reads start, then start + 0.5 s, then
    the next batch starts 10 s later (so a batch took 0.5 s)."""
    taken: list[float] = []
    ticks = iter(t for start in range(0, 1000, 10) for t in (float(start), start + 0.5))
    monkeypatch.setattr(retention, "_clock", lambda: next(ticks))
    monkeypatch.setattr(retention, "_sleep", taken.append)
    return taken


def test_retention_rests_between_batches_as_many_times_a_batch_s_time_as_asked(
    api: Api, full: str, rests: list[float]
) -> None:
    _finished(api, full, "jobs:a", JobState.COMPLETED, days=31, count=5)
    report = retention.retention_run(actor=RUNNER, batch_size=2, rest=3.0)
    assert report.total == 5
    assert rests == [1.5, 1.5]  # after the batches of 2 and 2, none after the last one


def test_retention_rests_by_the_setting_and_not_at_all_at_zero(
    api: Api, full: str, rests: list[float], settings: Any
) -> None:
    _finished(api, full, "jobs:a", JobState.COMPLETED, days=31, count=3)
    settings.RETENTION_REST = 1.0
    retention.retention_run(actor=RUNNER, batch_size=1)
    assert rests == [0.5, 0.5]
    _finished(api, full, "jobs:a", JobState.COMPLETED, days=31, count=3)
    call_command("retention_cleanup", "--batch-size=1", "--rest=0", stdout=StringIO())
    assert rests == [0.5, 0.5] and _left("jobs:a", JobState.COMPLETED) == 0


@pytest.mark.parametrize("rest", ["-1", "10.5", "nan"])
def test_a_rest_out_of_bounds_is_refused_before_anything_changes(
    api: Api, full: str, rest: str
) -> None:
    _finished(api, full, "jobs:a", JobState.COMPLETED, days=31)
    events = AuditEvent.objects.count()
    with pytest.raises(CommandError, match="--rest must be 0 to 10"):
        call_command("retention_cleanup", f"--rest={rest}", stdout=StringIO())
    with pytest.raises(ValueError, match="rest must be 0 to 10"):
        retention.retention_run(actor=RUNNER, rest=float(rest))
    assert _left("jobs:a", JobState.COMPLETED) == 1 and AuditEvent.objects.count() == events


def test_a_run_rests_a_quarter_of_the_task_timeout_at_most_in_all(
    api: Api, full: str, rests: list[float], settings: Any
) -> None:
    """The daily run is a django-q2 task on the scheduler's one worker: resting must
    not bring it near the timeout that would kill it before its audit step."""
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 8}  # a budget of 2 s
    _finished(api, full, "jobs:a", JobState.COMPLETED, days=31, count=4)
    report = retention.retention_run(actor=RUNNER, batch_size=1, rest=3.0)
    assert report.total == 4
    assert rests == [1.5, 0.5]  # 1.5 s asked each time; the budget runs out
