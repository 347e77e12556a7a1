"""GDPR erasure of schedules: a schedule whose job template is about the subject (its
``subject``, or the value at its queue's ``subject_path`` in the template data) is
deleted in either mode, counted per queue under ``schedules`` in the outcome, the
receipt and the audit event; a dry run counts it and keeps it; a legal hold keeps it
and reports the queue; queues the caller may not erase are not touched; schedules
about someone else stay."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from compliance.audit import Actor
from compliance.erasure import subject_erase
from compliance.models import AuditEvent, ErasureRequest
from queues import services
from queues.models import Schedule
from queues.schedulespec import parse_schedule_spec

from .support import SETUP

pytestmark = pytest.mark.django_db

SUBJECT = "u-4711"


def _schedule(
    queue: str, name: str, *, data: dict[str, object], subject: str | None = None
) -> None:
    """A schedule saved as the API's PUT saves it (the template data sealed)."""
    raw = {"every_ms": 60_000, "data": data, **({"subject": subject} if subject else {})}
    services.schedule_save(
        queue_name=queue, name=name, spec=parse_schedule_spec(raw), owner="test", actor=SETUP
    )


@pytest.fixture
def schedules() -> None:
    _schedule("mail", "by-path", data={"userId": SUBJECT, "email": "anna@example.com"})
    _schedule("mail", "by-subject", data={"n": 1}, subject=SUBJECT)
    _schedule("mail", "someone-else", data={"userId": "u-1"})
    services.queue_create(name="crm", subject_path="user.id", actor=SETUP)
    _schedule("crm", "nested", data={"user": {"id": SUBJECT}})
    _schedule("billing", "held", data={"userId": SUBJECT})
    services.queue_set_legal_hold(name="billing", hold=True, reason="case 9", actor=SETUP)


def _names() -> set[str]:
    return set(Schedule.objects.values_list("name", flat=True))


ALL = {"by-path", "by-subject", "someone-else", "nested", "held"}


def test_a_dry_run_counts_the_schedules_and_keeps_them(schedules: None) -> None:
    outcome = subject_erase(
        subject=SUBJECT, mode="redact", reason="", execute=False, actor=Actor.command("t")
    )
    assert outcome.counts == {"mail": {"schedules": 2}, "crm": {"schedules": 1}}
    assert outcome.schedules == 3 and outcome.total == 0
    assert outcome.held == ["billing"]
    assert _names() == ALL
    event = AuditEvent.objects.get(action="gdpr.erasePreview")
    assert event.details["counts"] == outcome.counts


@pytest.mark.parametrize("mode", ["redact", "delete"])
def test_an_executed_erasure_deletes_them_in_either_mode(schedules: None, mode: str) -> None:
    outcome = subject_erase(
        subject=SUBJECT, mode=mode, reason="DSR 7", execute=True, actor=Actor.command("t")
    )
    assert _names() == {"someone-else", "held"}
    receipt = ErasureRequest.objects.get()
    assert receipt.counts == {"mail": {"schedules": 2}, "crm": {"schedules": 1}}
    assert receipt.held == ["billing"] and outcome.receipt == receipt
    again = subject_erase(
        subject=SUBJECT, mode=mode, reason="DSR 7", execute=True, actor=Actor.command("t")
    )
    assert again.counts == {} and _names() == {"someone-else", "held"}


def test_queues_the_caller_may_not_erase_keep_theirs(schedules: None) -> None:
    outcome = subject_erase(
        subject=SUBJECT,
        mode="delete",
        reason="DSR 8",
        execute=True,
        actor=Actor.command("t"),
        may_erase=lambda name: name == "crm",
    )
    assert outcome.counts == {"crm": {"schedules": 1}}
    assert sorted(outcome.skipped) == ["billing", "mail"]
    assert _names() == ALL - {"nested"}


def test_the_command_reports_the_schedules(schedules: None) -> None:
    out = StringIO()
    call_command("gdpr_erase", SUBJECT, stdout=out)
    report = out.getvalue()
    assert "mail [schedules]: 2 schedule(s) would be deleted" in report
    assert "3 schedule(s) would be deleted." in report
    assert "Nothing found" not in report
    call_command("gdpr_erase", SUBJECT, "--execute", "--reason", "DSR 9", stdout=StringIO())
    assert _names() == {"someone-else", "held"}


def test_a_failure_after_the_deletion_keeps_every_schedule(
    schedules: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the receipt could not be written")

    monkeypatch.setattr("compliance.erasure._receipt_write", broken)
    with pytest.raises(RuntimeError):
        subject_erase(
            subject=SUBJECT, mode="delete", reason="DSR 10", execute=True, actor=Actor.command("t")
        )
    assert _names() == ALL and not ErasureRequest.objects.exists()
