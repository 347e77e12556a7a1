"""Schedules in the admin, per persona: listed per queue with timing, last and next
run and the last job; read-only (no add, change or Django delete); template data
masked like a job's; pause, resume, trigger and delete ask for a reason, call the
schedule services and write one audit event each, with the staff user and the reason;
an operator sees and acts only on the queues granted, an auditor only looks, and staff
without rights see nothing."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from compliance.models import AuditEvent
from queues import services
from queues.models import Job, Queue, Schedule
from queues.schedulespec import parse_schedule_spec
from security.models import ApiToken
from security.services import token_create

from .personas import logged_in, make_auditor, make_operator, make_staff, superuser_client
from .support import SETUP

pytestmark = pytest.mark.django_db
SCHEDULES = "/admin/queues/schedule/"


def _save(queue: str, name: str, **raw: Any) -> Schedule:
    timing = {} if "cron" in raw else {"every_ms": 3_600_000}
    spec = parse_schedule_spec({**timing, "data": {"n": 1}, **raw})
    owner = ApiToken.objects.filter(name="schedule-owner").first()
    if owner is None:  # a live token's family: a trigger pushes as the owner
        owner, _ = token_create(name="schedule-owner", rules=[], actor=SETUP)
    schedule, _ = services.schedule_save(
        queue_name=queue, name=name, spec=spec, owner=f"family:{owner.family}", actor=SETUP
    )
    return schedule


@pytest.fixture
def schedules() -> dict[str, Schedule]:
    Queue.objects.create(name="mail", sensitive_fields=["ssn"])
    return {
        "nightly": _save(
            "mail",
            "nightly",
            cron="30 2 * * *",
            timezone="Europe/Berlin",
            data={"ssn": "078-05-1120", "kind": "digest"},
        ),
        "hourly": _save("mail", "hourly"),
        "billing": _save("billing", "invoices"),
    }


def _listed(page: Any) -> set[str]:
    text = page.content.decode()
    names = Schedule.objects.values_list("name", flat=True)
    return {name for name in names if f">{name}</a>" in text}


def _act(client: Client, action: str, chosen: list[Schedule], **extra: str) -> Any:
    ids = [str(s.pk) for s in chosen]
    return client.post(SCHEDULES, {"action": action, "_selected_action": ids, **extra})


def _operator() -> Client:
    return logged_in(make_operator("olga", "mail"))


def _events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def test_the_list_shows_each_queue_s_schedules_with_their_runs(
    schedules: dict[str, Schedule],
) -> None:
    root = superuser_client()
    page = root.get(SCHEDULES)
    assert _listed(page) == {"nightly", "hourly", "invoices"}
    text = page.content.decode()
    assert "30 2 * * *" in text and "every 3600000 ms" in text and "Europe/Berlin" in text
    assert "Next run at" in text and "Last run at" in text
    services.schedule_trigger(queue_name="mail", name="hourly", actor=SETUP)
    job = Job.objects.get()
    text = root.get(SCHEDULES).content.decode()
    assert f'href="/admin/queues/job/{job.id}/change/"' in text
    assert 'href="/admin/queues/schedule/add/"' not in text
    mail = Queue.objects.get(name="mail")
    queue_page = root.get(f"/admin/queues/queue/{mail.pk}/change/").content.decode()
    link = f'href="/admin/queues/schedule/?queue__id__exact={mail.pk}"'
    assert link in queue_page
    assert _listed(root.get(SCHEDULES, {"queue__id__exact": mail.pk})) == {"nightly", "hourly"}


def test_the_detail_is_read_only_and_masks_the_template(schedules: dict[str, Schedule]) -> None:
    root = superuser_client()
    url = f"{SCHEDULES}{schedules['nightly'].pk}/change/"
    page = root.get(url).content.decode()
    assert "[MASKED]" in page and "078-05-1120" not in page and "digest" in page
    assert 'name="_save"' not in page and "reveal" not in page.lower()
    assert root.post(url, {"paused": "on", "_save": "Save"}).status_code == 403
    assert root.get(f"{SCHEDULES}{schedules['nightly'].pk}/delete/").status_code == 403
    assert root.get(f"{SCHEDULES}add/").status_code == 403
    [view] = _events("getSchedule")
    assert view.actor == "user:root" and view.details["name"] == "nightly"


def test_pause_resume_and_trigger_ask_a_reason_and_are_audited(
    schedules: dict[str, Schedule],
) -> None:
    op, hourly = _operator(), schedules["hourly"]
    ask = _act(op, "pause_schedules", [hourly])
    assert ask.status_code == 200 and "Pause 1 schedule(s)?" in ask.content.decode()
    blank = _act(op, "pause_schedules", [hourly], confirm="yes", reason="")
    assert blank.status_code == 200 and "This field is required" in blank.content.decode()
    assert not Schedule.objects.get(pk=hourly.pk).paused and not _events("schedule.pause")
    done = _act(op, "pause_schedules", [hourly], confirm="yes", reason="INC-1 storm")
    assert done.status_code == 302 and Schedule.objects.get(pk=hourly.pk).paused
    [pause] = _events("schedule.pause")
    assert pause.actor == "user:olga" and pause.details["reason"] == "INC-1 storm"
    _act(op, "resume_schedules", [hourly], confirm="yes", reason="INC-1 over")
    assert not Schedule.objects.get(pk=hourly.pk).paused
    [resume] = _events("schedule.resume")
    assert resume.actor == "user:olga" and resume.details["reason"] == "INC-1 over"
    _act(op, "trigger_schedules", [hourly], confirm="yes", reason="backfill")
    job = Job.objects.get()
    assert job.queue.name == "mail" and Schedule.objects.get(pk=hourly.pk).last_job_id == job.id
    [trigger] = _events("schedule.trigger")
    assert trigger.actor == "user:olga" and trigger.details["reason"] == "backfill"
    _act(op, "delete_schedules", [hourly], confirm="yes", reason="retired")
    assert not Schedule.objects.filter(pk=hourly.pk).exists()
    [delete] = _events("schedule.delete")
    assert delete.actor == "user:olga" and delete.details["reason"] == "retired"


def test_an_operator_sees_and_acts_only_on_the_queues_granted(
    schedules: dict[str, Schedule],
) -> None:
    op, other = _operator(), schedules["billing"]
    assert _listed(op.get(SCHEDULES)) == {"nightly", "hourly"}
    assert op.get(f"{SCHEDULES}{other.pk}/change/").status_code in (302, 403, 404)
    for action in ("pause_schedules", "trigger_schedules", "delete_schedules"):
        _act(op, action, [other, schedules["hourly"]], confirm="yes", reason="r")
    assert Schedule.objects.filter(pk=other.pk, paused=False).exists()
    assert not Job.objects.filter(queue__name="billing").exists()
    acted = AuditEvent.objects.filter(action__startswith="schedule.", queue="billing")
    assert list(acted.values_list("action", flat=True)) == ["schedule.save"]  # the fixture's
    assert not Schedule.objects.filter(pk=schedules["hourly"].pk).exists()  # theirs


def test_an_auditor_only_looks_and_staff_without_rights_see_nothing(
    schedules: dict[str, Schedule],
) -> None:
    auditor = logged_in(make_auditor())
    page = auditor.get(SCHEDULES)
    assert _listed(page) == {"nightly", "hourly", "invoices"}
    assert 'name="action"' not in page.content.decode()
    refused = _act(auditor, "trigger_schedules", [schedules["hourly"]], confirm="yes", reason="x")
    assert refused.status_code == 403
    nobody = logged_in(make_staff())
    assert nobody.get(SCHEDULES).status_code == 403
    assert nobody.get(f"{SCHEDULES}{schedules['hourly'].pk}/change/").status_code in (302, 403)
    assert "/admin/queues/schedule/" not in nobody.get("/admin/").content.decode()
    assert not Job.objects.exists() and not Schedule.objects.filter(paused=True).exists()
    assert not AuditEvent.objects.filter(action="schedule.trigger").exists()


def test_a_viewer_of_the_queue_sees_its_schedules_and_cannot_act(
    schedules: dict[str, Schedule],
) -> None:
    vera = make_staff("vera")
    services.queue_grant(queue_name="mail", role="viewer", grantee=vera, actor=SETUP)
    viewer = logged_in(vera)
    page = viewer.get(SCHEDULES)
    assert _listed(page) == {"nightly", "hourly"}
    assert 'name="action"' not in page.content.decode()
    for action in ("pause_schedules", "trigger_schedules", "delete_schedules"):
        answer = _act(viewer, action, [schedules["hourly"]], confirm="yes", reason="x")
        assert answer.status_code in (302, 403)
    assert Schedule.objects.filter(pk=schedules["hourly"].pk, paused=False).exists()
    assert not Job.objects.exists()
    assert not AuditEvent.objects.filter(
        action__in=["schedule.pause", "schedule.trigger", "schedule.delete"]
    ).exists()
