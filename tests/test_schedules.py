"""django-q2 schedules: created idempotently, carrying no payloads, and each scheduled
function, run synchronously through django-q2, has its effect."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db.models import F
from django.utils import timezone
from django_q.models import Schedule, Task
from django_q.tasks import async_task

from compliance.models import AuditEvent
from queues.models import Job, JobEvent, JobState
from queues.models import Schedule as RepeatingJob

from .personas import make_full_token
from .support import Api, pull, push

pytestmark = pytest.mark.django_db

MARK = "schedule-payload-marker"


def test_setup_schedules_is_idempotent_and_carries_no_arguments() -> None:
    call_command("setup_schedules", stdout=StringIO())
    call_command("setup_schedules", stdout=StringIO())
    schedules = {s.name: s for s in Schedule.objects.all()}
    assert set(schedules) == {
        "flashq: seal audit events",
        "flashq: sweep expired leases",
        "flashq: fire due schedules",
        "flashq: retention",
        "flashq: prune the job event log",
        "flashq: fold and prune the job rollup",
    }
    assert schedules["flashq: seal audit events"].schedule_type == Schedule.MINUTES
    assert schedules["flashq: retention"].schedule_type == Schedule.DAILY
    assert all(not s.args and not s.kwargs for s in schedules.values())


def test_each_scheduled_function_does_its_work_and_its_task_row_holds_no_payload(
    api: Api,
) -> None:
    call_command("setup_schedules", stdout=StringIO())
    token = make_full_token()
    old = push(api, token, queue="jobs:s", data={"note": MARK})["id"]
    Job.objects.filter(id=old).update(
        state=JobState.COMPLETED, finished_at=timezone.now() - timedelta(days=31)
    )
    leased = push(api, token, queue="jobs:s", data={"note": MARK})["id"]
    [job] = pull(api, token, queue="jobs:s", lease=1)
    Job.objects.filter(id=job["id"]).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    repeat = {"every_ms": 3_600_000, "data": {"note": MARK}}
    put = api.request("PUT", "/queues/jobs:s/schedules/hourly", repeat, as_=token)
    assert put.status == 201
    # Back one period, to the schedule's first tick (now less 5 s need not be a tick).
    RepeatingJob.objects.update(next_run_at=F("next_run_at") - timedelta(hours=1))
    JobEvent.objects.update(at=timezone.now() - timedelta(hours=1))
    logged = JobEvent.objects.count()
    schedules = {s.func: s for s in Schedule.objects.all()}
    for func in schedules:
        async_task(func, sync=True)
    assert Job.objects.get(id=leased).state == JobState.WAITING  # lease recovered
    assert not Job.objects.filter(id=old).exists()  # retention ran
    assert AuditEvent.objects.filter(seq__isnull=False).exists()  # sealing ran
    assert Job.objects.filter(key__startswith="schedule:hourly:").count() == 1  # fired
    tasks = list(Task.objects.all())
    assert len(tasks) == 6 and all(task.success for task in tasks), [t.result for t in tasks]
    assert f"pruned {logged} event(s)" in [task.result for task in tasks]  # the event log
    # The rollup: the old job's completion was counted 31 days ago, past what it keeps
    # (on PostgreSQL the minutes' stripes are folded as well).
    rollup = [str(task.result) for task in tasks if "rollup" in str(task.result)]
    assert len(rollup) == 1 and rollup[0].endswith(", deleted 1 rollup row(s)"), rollup
    assert all(MARK not in repr((task.args, task.kwargs, task.result)) for task in tasks)


def _run_events(since: int) -> list[tuple[str, str, str, dict[str, object]]]:
    """The events after ``since``, less the cutoffs (each run computes its own now)."""
    events = AuditEvent.objects.filter(id__gt=since).order_by("id")
    moments = {"finished_before", "before"}
    return [
        (e.action, e.actor, e.queue, {k: v for k, v in e.details.items() if k not in moments})
        for e in events
    ]


def test_the_scheduled_retention_calls_the_service_and_records_what_the_command_does(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = make_full_token()

    def finished_long_ago() -> None:
        done = push(api, token, queue="jobs:s", data={"note": MARK})["id"]
        Job.objects.filter(id=done).update(
            state=JobState.COMPLETED, finished_at=timezone.now() - timedelta(days=31)
        )

    finished_long_ago()
    start = AuditEvent.objects.order_by("-id")[0].id
    call_command("retention_cleanup", stdout=StringIO())
    by_command = _run_events(start)

    def no_command(*args: object, **kwargs: object) -> None:
        raise AssertionError("the scheduled run went through the management command")

    monkeypatch.setattr(
        "compliance.management.commands.retention_cleanup.Command.handle", no_command
    )
    finished_long_ago()
    start = AuditEvent.objects.order_by("-id")[0].id
    async_task("compliance.tasks.run_retention", sync=True)
    [task] = Task.objects.filter(func="compliance.tasks.run_retention")
    assert task.success, task.result
    assert task.result == "expired 0, deleted 1, held 0, retired 0 audit event(s)"
    assert [(action, actor) for action, actor, *_ in by_command] == [
        ("clean", "command:retention_cleanup"),
        ("audit.retire", "command:retention_cleanup"),
    ]
    assert _run_events(start) == by_command
