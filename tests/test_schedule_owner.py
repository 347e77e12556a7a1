"""What the tick engine does when a tick cannot fire, and what a save or resume keeps:
a schedule whose owner has no live token left pushes nothing and is paused
(``owner_revoked``); a template that stopped fitting its queue is paused after one
error event, not one per tick; a replace of a live schedule keeps its due tick (an
identical PUT drops nothing); resuming a schedule that is not paused changes nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from compliance.models import AuditEvent
from queues import services
from queues.models import Job, Schedule
from queues.schedulespec import parse_schedule_spec
from security.models import ApiToken
from security.selectors import owner_live
from security.services import token_delete, token_revoke, token_rotate

from .support import SETUP
from .test_schedule_engine import T0, _fire, _keys, _save, owner

pytestmark = pytest.mark.django_db


def _errors() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="schedule.fire", outcome="error"))


def _resave(name: str = "s", who: str | None = None, **body: Any) -> Schedule:
    body.setdefault("data", {"n": 1})
    schedule, _ = services.schedule_save(
        queue_name="jobs:e", name=name, spec=parse_schedule_spec(body),
        owner=who or owner(), actor=SETUP,
    )  # fmt: skip
    return schedule


def test_a_revoked_owners_schedule_pushes_nothing_and_is_paused() -> None:
    _save(every_ms=60_000)
    token_revoke(name="owner", actor=SETUP)
    assert _fire(T0 + timedelta(minutes=1)) == 0
    assert not Job.objects.exists()
    schedule = Schedule.objects.get()
    assert schedule.paused is True and schedule.last_run_at is None
    [failed] = _errors()
    assert (failed.status, failed.details["code"]) == (403, "owner_revoked")
    assert failed.details["paused"] is True and failed.details["fired"] == 0
    # Paused: the next ticks neither push nor record anything.
    for minutes in range(2, 30):
        assert _fire(T0 + timedelta(minutes=minutes)) == 0
    assert len(_errors()) == 1 and not Job.objects.exists()
    # An operator makes it a live token's (a PUT by it) and resumes it.
    _resave(who=owner("heir"), every_ms=60_000)
    resumed = services.schedule_resume(queue_name="jobs:e", name="s", actor=SETUP)
    assert resumed.next_run_at is not None
    assert _fire(resumed.next_run_at) == 1
    assert Job.objects.get().pushed_by == owner("heir")


@pytest.mark.parametrize("end", ["expired", "deleted"])
def test_an_expired_or_deleted_owner_is_not_live_either(end: str) -> None:
    _save(every_ms=60_000)
    if end == "expired":
        ApiToken.objects.filter(name="owner").update(expires_at=T0)  # before the tick
    else:
        token_delete(name="owner", actor=SETUP)
    assert _fire(T0 + timedelta(minutes=1)) == 0
    assert Schedule.objects.get().paused is True
    assert [e.details["code"] for e in _errors()] == ["owner_revoked"]


def test_a_rotated_family_stays_live_until_its_last_token_goes(settings: Any) -> None:
    key = owner()
    now = timezone.now()
    token_rotate(name="owner", overlap_hours=0, actor=SETUP)  # the old one expires now
    assert owner_live(key, now=now + timedelta(seconds=1))  # its successor is live
    token_revoke(name="owner", actor=SETUP)  # the whole family
    assert not owner_live(key, now=now)
    lone = ApiToken.objects.get(name__startswith="owner~")
    assert not owner_live(f"token:{lone.pk}", now=now)
    settings.AUTH_TOKENS = ["b" * 40]
    assert owner_live("bootstrap:bootstrap-1", now=now)
    assert not owner_live("bootstrap:bootstrap-2", now=now)
    for made_up in ("", "fam:o", "family:", "token:x", "staff:root"):
        assert not owner_live(made_up, now=now), made_up


def test_a_template_that_stopped_fitting_is_paused_after_one_error_event() -> None:
    _save(every_ms=1000, data={"n": 1})
    services.queue_set_schema(
        name="jobs:e", schema={"type": "object", "required": ["report"]}, actor=SETUP
    )
    for seconds in range(1, 120):
        _fire(T0 + timedelta(seconds=seconds))
    [failed] = _errors()
    assert failed.details["code"] == "schema_validation_failed"
    assert failed.details["paused"] is True
    assert Schedule.objects.get().paused is True and not Job.objects.exists()


def test_an_identical_put_keeps_a_due_tick_not_yet_fired() -> None:
    _save(every_ms=60_000)  # its first tick, T0 + 1 min, is long due and not fired
    due = T0 + timedelta(minutes=1)
    assert Schedule.objects.get().next_run_at == due
    _resave(every_ms=60_000)
    assert Schedule.objects.get().next_run_at == due
    assert _fire(due + timedelta(seconds=5)) == 1
    assert _keys() == ["schedule:s:2026-01-05T12:01:00Z"]
    # Saved again once fired: the fired tick is never fired again.
    _resave(every_ms=60_000)
    assert Schedule.objects.get().next_run_at == due + timedelta(minutes=1)
    assert _fire(due + timedelta(seconds=10)) == 0
    assert Job.objects.count() == 1


def test_a_put_of_a_paused_schedule_still_starts_after_now() -> None:
    _save(every_ms=60_000)
    services.schedule_pause(queue_name="jobs:e", name="s", actor=SETUP)
    before = timezone.now()
    saved = _resave(every_ms=60_000)
    assert saved.paused is True
    assert saved.next_run_at is not None and saved.next_run_at > before


def test_resuming_a_schedule_that_is_not_paused_changes_nothing() -> None:
    _save(every_ms=60_000)
    before = Schedule.objects.get()
    resumed = services.schedule_resume(queue_name="jobs:e", name="s", actor=SETUP)
    after = Schedule.objects.get()
    assert resumed.paused is False
    assert (after.next_run_at, after.updated_at) == (before.next_run_at, before.updated_at)
    event = AuditEvent.objects.filter(action="schedule.resume").get()
    assert event.details["changed"] is False
    assert _fire(T0 + timedelta(minutes=1, seconds=5)) == 1  # the due tick still fires
