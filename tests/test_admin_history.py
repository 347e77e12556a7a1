""" "History" on every flashQ admin page lists the object's audit events (Django's own
history reads LogEntry, which the admin never writes): a queue's settings and
pauses, a job's events, a schedule's, a webhook's, a token's and a retention policy's,
never another object's; to whoever may view the object, with a link into the audit
trail for those who may read it, and refused to anyone else."""

from __future__ import annotations

import re
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from compliance import retention
from compliance.models import AuditEvent, RetentionPolicy
from queues import services
from queues.models import Job, Queue
from queues.schedulespec import parse_schedule_spec
from security.services import token_create, token_revoke

from .personas import logged_in, make_auditor, make_operator, make_staff, superuser_client
from .support import SETUP, Api, make_token, push

pytestmark = pytest.mark.django_db
SECONDS = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def _rows(page: Any) -> list[str]:
    """The history table's rows, as text."""
    text = page.content.decode()
    return [
        re.sub(r"<[^>]+>|\s+", " ", row).strip()
        for row in re.findall(r'<tr class="audit-event">(.*?)</tr>', text, re.S)
    ]


def _history_link(client: Any, change_url: str) -> str:
    page = client.get(change_url).content.decode()
    [href] = re.findall(r'href="([^"]+)" class="historylink"', page)
    return str(href)


def test_a_queue_s_history_lists_what_was_done_to_it_and_nothing_else() -> None:
    make_operator("olga", "mail", "billing")
    services.queue_set_paused(name="mail", paused=True, actor=SETUP, reason="INC-1")
    services.queue_set_paused(name="billing", paused=True, actor=SETUP, reason="INC-2")
    mail = Queue.objects.get(name="mail")
    root = superuser_client()
    url = _history_link(root, f"/admin/queues/queue/{mail.pk}/change/")
    assert url == f"/admin/queues/queue/{mail.pk}/history/"
    rows = _rows(root.get(url))
    assert any("pause" in row and "INC-1" in row and "command:test-setup" in row for row in rows)
    assert any("queue.grant" in row and "olga" in row for row in rows)
    # guardian's rows, recorded as they change, name the grant's actor too.
    grants = [row for row in rows if "staff.grant" in row]
    assert grants and all("command:test-setup" in row for row in grants)
    assert not any("INC-2" in row for row in rows)
    assert all(SECONDS.match(row) for row in rows)  # times with seconds


def test_a_job_s_history_is_its_audit_events(api: Api) -> None:
    token = make_token("svc", "*=*,admin")
    mine = push(api, token, queue="mail", data={"n": 1})["id"]
    push(api, token, queue="mail", data={"n": 2})
    root = superuser_client()
    url = _history_link(root, f"/admin/queues/job/{mine}/change/")
    rows = _rows(root.get(url))
    assert [row for row in rows if " push " in f" {row} "] and all(
        mine in row or "admin.jobView" in row or "push" in row for row in rows
    )
    assert len([row for row in rows if " push " in f" {row} "]) == 1
    assert Job.objects.count() == 2


def _schedule(queue: str, name: str) -> Any:
    owner, _ = token_create(name=f"owner-{queue}-{name}", rules=[], actor=SETUP)
    spec = parse_schedule_spec({"every_ms": 3_600_000, "data": {"n": 1}})
    schedule, _ = services.schedule_save(
        queue_name=queue, name=name, spec=spec, owner=f"family:{owner.family}", actor=SETUP
    )
    return schedule


def test_a_schedule_s_and_a_webhook_s_history_name_only_them() -> None:
    nightly = _schedule("mail", "nightly")
    _schedule("mail", "hourly")
    services.schedule_pause(queue_name="mail", name="nightly", actor=SETUP, reason="S-1")
    services.schedule_pause(queue_name="mail", name="hourly", actor=SETUP, reason="S-2")
    hook, _ = services.webhook_save(
        queue_name="mail",
        name="h",
        url="https://hooks.example.com/a",
        events=["failed"],
        actor=SETUP,
    )
    services.webhook_save(
        queue_name="mail",
        name="other",
        url="https://hooks.example.com/b",
        events=["failed"],
        actor=SETUP,
    )
    services.webhook_rotate_secret(queue_name="mail", name="h", actor=SETUP, reason="W-1")
    root = superuser_client()
    page = root.get(_history_link(root, f"/admin/queues/schedule/{nightly.pk}/change/"))
    rows = _rows(page)
    assert [row.split()[2] for row in rows] == ["schedule.pause", "schedule.save"]
    assert "S-1" in rows[0] and not any("S-2" in row for row in rows)
    # The audit trail's link shows the same events, and no other schedule's.
    [trail] = re.findall(r'href="([^"]+)" id="audit-trail-link"', page.content.decode())
    listed = root.get(trail.replace("&amp;", "&"))
    ids = set(
        re.findall(r'href="/admin/compliance/auditevent/(\d+)/change/', listed.content.decode())
    )
    nightly_events = AuditEvent.objects.filter(
        action__startswith="schedule.", details__name="nightly"
    )
    assert ids == {str(pk) for pk in nightly_events.values_list("pk", flat=True)} and len(ids) == 2
    rows = _rows(root.get(_history_link(root, f"/admin/queues/webhook/{hook.pk}/change/")))
    assert [row.split()[2] for row in rows] == ["webhook.rotateSecret", "webhook.save"]
    assert "W-1" in rows[0]


def test_a_token_s_and_a_policy_s_history() -> None:
    token, _ = token_create(name="billing", rules=[], actor=SETUP)
    token_create(name="other", rules=[], actor=SETUP)
    token_revoke(name="billing", actor=SETUP)
    policy = retention.retention_policy_save(
        policy=RetentionPolicy(queue_pattern="mail*", target="completed", max_age_days=7),
        actor=SETUP,
    )
    retention.retention_policy_save(
        policy=RetentionPolicy(queue_pattern="b*", target="completed", max_age_days=9), actor=SETUP
    )
    root = superuser_client()
    rows = _rows(root.get(_history_link(root, f"/admin/security/apitoken/{token.pk}/change/")))
    assert [row.split()[2] for row in rows] == ["token.revoke", "token.create"]
    change = f"/admin/compliance/retentionpolicy/{policy.pk}/change/"
    rows = _rows(root.get(_history_link(root, change)))
    assert [row.split()[2] for row in rows] == ["retention.policySave"]
    assert "mail*" in rows[0] and "b*" not in rows[0]


def test_history_is_for_those_who_may_view_the_object() -> None:
    olga = make_operator("olga", "mail")
    Queue.objects.create(name="billing")
    mail, billing = Queue.objects.get(name="mail"), Queue.objects.get(name="billing")
    call_command("setup_roles", stdout=StringIO())
    op = logged_in(olga)
    page = op.get(f"/admin/queues/queue/{mail.pk}/history/")
    assert page.status_code == 200 and _rows(page)
    # An operator may not read the audit trail: no link into it.
    assert 'id="audit-trail-link"' not in page.content.decode()
    assert op.get(f"/admin/queues/queue/{billing.pk}/history/").status_code in (403, 404)
    auditor = logged_in(make_auditor())
    text = auditor.get(f"/admin/queues/queue/{mail.pk}/history/").content.decode()
    [trail] = re.findall(r'href="([^"]+)" id="audit-trail-link"', text)
    listed = auditor.get(trail.replace("&amp;", "&"))
    assert listed.status_code == 200 and "queue.grant" in listed.content.decode()
    nobody = logged_in(make_staff())
    assert nobody.get(f"/admin/queues/queue/{mail.pk}/history/").status_code in (403, 404)
    token, _ = token_create(name="t", rules=[], actor=SETUP)
    assert op.get(f"/admin/security/apitoken/{token.pk}/history/").status_code == 403
    assert auditor.get(f"/admin/security/apitoken/{token.pk}/history/").status_code == 403


def test_append_only_records_have_no_history_link() -> None:
    token_create(name="t", rules=[], actor=SETUP)
    event = AuditEvent.objects.first()
    assert event is not None
    page = superuser_client().get(f"/admin/compliance/auditevent/{event.pk}/change/")
    assert page.status_code == 200 and "historylink" not in page.content.decode()
