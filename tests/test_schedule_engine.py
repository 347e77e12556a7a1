"""The tick engine (services.schedules_fire), driven with an explicit ``now``: exactly
one job per tick however often it runs, catch-up after a gap (none, latest, all and
max_catch_up), clock jumps, start_at / end_at, DST days, and a template that stopped
fitting its queue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from compliance.audit import Actor
from compliance.models import AuditEvent
from queues import services
from queues.models import Job, Queue, Schedule
from queues.schedulespec import next_tick, parse_schedule_spec, ticks_between
from security.encryption import generate_key
from security.models import ApiToken
from security.services import token_create

from .support import SETUP

pytestmark = pytest.mark.django_db

FIRER = Actor.system("scheduler")
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def _save(name: str = "s", at: datetime = T0, **body: Any) -> Schedule:
    """A schedule saved through the service, then set up as if saved at ``at`` (its
    created_at and first tick; the audit trail refuses events dated in the past)."""
    body.setdefault("data", {"n": 1})
    schedule, _ = services.schedule_save(
        queue_name="jobs:e", name=name, spec=parse_schedule_spec(body), owner=owner(),
        actor=SETUP,
    )  # fmt: skip
    schedule.created_at = at
    schedule.next_run_at = next_tick(schedule, at)
    Schedule.objects.filter(pk=schedule.pk).update(created_at=at, next_run_at=schedule.next_run_at)
    return schedule


def owner(name: str = "owner") -> str:
    """The key (a token family's, as Principal.key gives it) of a live token ``name``,
    made the first time: a schedule whose owner has no live token does not fire."""
    token = ApiToken.objects.filter(name=name).first()
    if token is None:
        token, _ = token_create(name=name, rules=[], actor=SETUP)
    return f"family:{token.family}"


def _fire(at: datetime) -> int:
    return services.schedules_fire(actor=FIRER, now=at)


def _keys() -> list[str]:
    return sorted(str(key) for key in Job.objects.values_list("key", flat=True))


def test_each_tick_makes_one_job_however_often_the_engine_runs() -> None:
    _save(every_ms=60_000)
    assert _fire(T0 + timedelta(seconds=30)) == 0
    assert _fire(T0 + timedelta(seconds=60)) == 1
    assert _fire(T0 + timedelta(seconds=60)) == 0
    assert _fire(T0 + timedelta(seconds=61)) == 0
    assert _fire(T0 + timedelta(seconds=120)) == 1
    assert _keys() == [
        "schedule:s:2026-01-05T12:01:00Z",
        "schedule:s:2026-01-05T12:02:00Z",
    ]
    job = Job.objects.order_by("created_at").first()
    assert job is not None and job.pushed_by == owner() and job.data == {"n": 1}
    schedule = Schedule.objects.get()
    assert schedule.last_run_at == T0 + timedelta(seconds=120)
    assert schedule.next_run_at == T0 + timedelta(seconds=180)
    assert schedule.last_job_id == Job.objects.get(key=_keys()[-1]).id
    fires = AuditEvent.objects.filter(action="schedule.fire", outcome="ok")
    assert fires.count() == 2
    assert all(event.actor == "system:scheduler" for event in fires)


def test_catch_up_latest_fires_the_most_recent_missed_tick() -> None:
    _save(every_ms=60_000)
    assert _fire(T0 + timedelta(minutes=10, seconds=5)) == 1
    assert _keys() == ["schedule:s:2026-01-05T12:10:00Z"]
    event = AuditEvent.objects.get(action="schedule.fire")
    assert event.details["fired"] == 1 and event.details["skipped"] == 9


def test_catch_up_all_fires_each_missed_tick_up_to_max_catch_up() -> None:
    _save(every_ms=60_000, catch_up="all", max_catch_up=4)
    assert _fire(T0 + timedelta(minutes=3)) == 3
    assert _fire(T0 + timedelta(minutes=10)) == 4
    assert _keys()[-4:] == [f"schedule:s:2026-01-05T12:{m:02d}:00Z" for m in (7, 8, 9, 10)]
    assert len(_keys()) == 7


def test_catch_up_none_fires_only_a_tick_still_on_time() -> None:
    _save(every_ms=3_600_000, catch_up="none")
    assert _fire(T0 + timedelta(hours=2, minutes=30)) == 0  # both ticks long late
    assert Schedule.objects.get().next_run_at == T0 + timedelta(hours=3)
    assert _fire(T0 + timedelta(hours=3, seconds=30)) == 1  # 30 s late: still on time
    assert _keys() == ["schedule:s:2026-01-05T15:00:00Z"]


def test_a_clock_that_jumps_back_refires_nothing_and_one_that_jumps_forward_catches_up() -> None:
    _save(every_ms=60_000)
    assert _fire(T0 + timedelta(minutes=5)) == 1
    assert _fire(T0 + timedelta(minutes=1)) == 0  # back in time
    assert _fire(T0 + timedelta(minutes=5)) == 0
    assert Schedule.objects.get().next_run_at == T0 + timedelta(minutes=6)
    assert _fire(T0 + timedelta(days=3)) == 1  # forward: the latest tick
    assert _keys() == ["schedule:s:2026-01-05T12:05:00Z", "schedule:s:2026-01-08T12:00:00Z"]


def test_start_at_and_end_at_bound_the_ticks() -> None:
    _save(
        every_ms=60_000,
        catch_up="all",
        start_at="2026-01-05T13:00:30Z",
        end_at="2026-01-05T13:03:30Z",
    )
    schedule = Schedule.objects.get()
    assert schedule.next_run_at == datetime(2026, 1, 5, 13, 0, 30, tzinfo=UTC)
    assert _fire(T0 + timedelta(minutes=59)) == 0
    assert _fire(T0 + timedelta(hours=2)) == 4
    assert _keys() == [f"schedule:s:2026-01-05T13:0{m}:30Z" for m in range(4)]
    assert Schedule.objects.get().next_run_at is None
    assert _fire(T0 + timedelta(days=2)) == 0


def test_a_replace_never_refires_a_fired_tick() -> None:
    # A firer whose clock runs two hours ahead of the app server that saves again.
    ahead = timezone.now() + timedelta(hours=2)
    _save(cron="0 * * * *", at=timezone.now())
    assert _fire(ahead) == 1
    fired = Schedule.objects.get().last_run_at
    assert fired is not None and fired > timezone.now()
    services.schedule_save(
        queue_name="jobs:e", name="s", spec=parse_schedule_spec({"cron": "0 * * * *", "data": {}}),
        owner=owner(), actor=SETUP,
    )  # fmt: skip
    assert Schedule.objects.get().next_run_at == fired + timedelta(hours=1)
    assert _fire(ahead) == 0
    assert Job.objects.count() == 1


def test_resume_skips_the_ticks_missed_while_paused() -> None:
    _save(every_ms=60_000, catch_up="all")
    services.schedule_pause(queue_name="jobs:e", name="s", actor=SETUP)
    assert _fire(T0 + timedelta(minutes=10)) == 0
    services.schedule_resume(queue_name="jobs:e", name="s", actor=SETUP)
    next_run_at = Schedule.objects.get().next_run_at
    assert next_run_at is not None and next_run_at > timezone.now() - timedelta(minutes=1)
    assert _fire(T0 + timedelta(minutes=11)) == 0  # the ticks missed while paused
    assert _fire(next_run_at) == 1


@pytest.mark.parametrize(
    ("zone", "spring", "fall", "on_the_days"),
    [
        # Berlin: 02:30 does not exist on 29 March (03:00 CEST instead), and is met
        # twice on 25 October (it runs at the first, CEST).
        (
            "Europe/Berlin",
            datetime(2026, 3, 29),
            datetime(2026, 10, 25),
            ["2026-03-29T01:00:00Z", "2026-10-25T00:30:00Z"],
        ),
        # New York: no 02:30 on 8 March (03:00 EDT); on 1 November 01:00-02:00 repeats
        # and 02:30 EST comes once.
        (
            "America/New_York",
            datetime(2026, 3, 8),
            datetime(2026, 11, 1),
            ["2026-03-08T07:00:00Z", "2026-11-01T07:30:00Z"],
        ),
    ],
)
def test_a_0230_job_runs_once_on_each_dst_day(
    zone: str, spring: datetime, fall: datetime, on_the_days: list[str]
) -> None:
    for day, name, expected in ((spring, "spring", on_the_days[0]), (fall, "fall", on_the_days[1])):
        start = day.replace(tzinfo=UTC) - timedelta(days=1)
        _save(name, at=start, cron="30 2 * * *", timezone=zone, catch_up="all")
        # The engine runs every 10 minutes for three days around the change.
        for step in range(3 * 24 * 6):
            _fire(start + timedelta(minutes=10 * step))
        keys = [key for key in _keys() if key.startswith(f"schedule:{name}:")]
        assert len(keys) == 3, keys
        days = [key.split(":", 2)[2][:10] for key in keys]
        assert len(set(days)) == 3  # one a day
        assert f"schedule:{name}:{expected}" in keys  # the change day's one run


def test_six_field_cron_and_the_tick_functions() -> None:
    schedule = _save(cron="*/15 * * * * *")
    assert next_tick(schedule, T0) == T0 + timedelta(seconds=15)
    ticks, count = ticks_between(schedule, T0, T0 + timedelta(minutes=1), last=2)
    assert count == 4 and ticks == [T0 + timedelta(seconds=45), T0 + timedelta(minutes=1)]


def test_a_template_that_stopped_fitting_is_recorded_paused_and_does_not_wedge_the_engine() -> None:
    _save(every_ms=60_000)
    _save("good", every_ms=60_000, data={"report": 1})
    services.queue_set_schema(
        name="jobs:e", schema={"type": "object", "required": ["report"]}, actor=SETUP
    )
    assert _fire(T0 + timedelta(minutes=1)) == 1
    assert _keys() == ["schedule:good:2026-01-05T12:01:00Z"]
    failed = AuditEvent.objects.get(action="schedule.fire", outcome="error")
    assert failed.details["name"] == "s" and failed.details["code"] == "schema_validation_failed"
    assert failed.status == 422 and failed.details["paused"] is True
    assert Schedule.objects.get(name="s").paused is True  # until an operator fixes it
    assert Schedule.objects.get(name="good").paused is False
    assert Queue.objects.get(name="jobs:e").json_schema is not None


def test_a_template_whose_key_left_the_keyring_does_not_wedge_the_engine(
    settings: Any,
) -> None:
    settings.ENCRYPTION_KEYS = f"k1:{generate_key()}"
    _save("lost", every_ms=60_000)
    settings.ENCRYPTION_KEYS = f"k2:{generate_key()}"  # k1, which sealed it, is gone
    _save("kept", every_ms=60_000)
    assert _fire(T0 + timedelta(minutes=1)) == 1
    assert _keys() == ["schedule:kept:2026-01-05T12:01:00Z"]
    failed = AuditEvent.objects.get(action="schedule.fire", outcome="error")
    assert failed.details["name"] == "lost" and failed.details["code"] == "payload_unreadable"
    assert Schedule.objects.get(name="lost").paused is True
