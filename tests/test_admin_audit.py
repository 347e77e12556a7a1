"""The audit trail in the admin: filters, the chain's status and verification, and an
export (CSV or JSON Lines) that auditors may run and that is itself audited."""

from __future__ import annotations

import csv
import html
import json
import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from compliance.audit import chain, verification
from compliance.models import AuditEvent

from .personas import logged_in, make_auditor
from .support import Api, clear_audit, make_token, push
from .test_audit_chain import _raw

pytestmark = pytest.mark.django_db
BASE = "/admin/compliance/auditevent/"


@pytest.fixture
def auditor(api: Api) -> Client:
    user = make_auditor()
    clear_audit()  # the roles and the auditor's rights are recorded too: not counted here
    token = make_token("svc", "*=*,admin")
    push(api, token, queue="jobs:a")
    push(api, token, queue="jobs:b")
    chain.seal_all()
    return logged_in(user)


def test_the_list_filters_and_shows_the_chain_status(auditor: Client) -> None:
    page = auditor.get(BASE, {"queue": "jobs:a"}).content.decode()
    assert "Sealed up to seq 3" in page
    assert "1 event(s) waiting to be sealed" in page  # the auditor's own login
    assert page.count('class="field-action"') == 1  # only jobs:a's push
    assert auditor.get(BASE, {"outcome": "ok", "action": "push"}).status_code == 200


def test_an_auditor_exports_and_the_export_is_audited(auditor: Client) -> None:
    params = {"since": "2000-01-01 00:00", "until": "2100-01-01 00:00", "format": "csv"}
    response = auditor.get(f"{BASE}export/", {**params, "queue": "jobs:b"})
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="audit-20000101-21000101.csv"'
    rows = list(csv.DictReader(StringIO(response.content.decode())))
    assert [(row["action"], row["queue"]) for row in rows] == [("push", "jobs:b")]
    event = AuditEvent.objects.get(action="audit.export")
    assert event.actor == "user:audrey" and event.details["count"] == 1
    lines = auditor.get(f"{BASE}export/", {**params, "format": "jsonl"}).content.decode()
    assert {json.loads(line)["action"] for line in lines.splitlines()} >= {"push", "token.create"}
    form = auditor.get(f"{BASE}export/", {"since": "2026-12-01", "until": "2026-11-01"})
    assert "must be after" in form.content.decode()


def test_verification_is_shown_and_names_a_broken_event(auditor: Client) -> None:
    assert "Chain OK: 3 sealed event(s)" in auditor.get(f"{BASE}verify/").content.decode()
    event = AuditEvent.objects.get(seq=2)
    _raw("UPDATE compliance_auditevent SET queue = 'forged' WHERE id = %s", [event.pk])
    page = auditor.get(f"{BASE}verify/").content.decode()
    assert f"Chain BROKEN at event {event.pk}" in page and "altered" in page


def _follow_verification(auditor: Client) -> tuple[str, int]:
    """The verify page's steps, followed as the browser's meta refresh does: the last
    page and how many pages it took."""
    url, pages = f"{BASE}verify/", 0
    while True:
        pages += 1
        page = auditor.get(url).content.decode()
        step = re.search(r'url=(\?after=\d+&amp;checked=\d+)"', page)
        if step is None:
            return page, pages
        url = f"{BASE}verify/" + html.unescape(step.group(1))


def test_verification_goes_in_steps_and_still_names_a_break_in_a_later_step(
    auditor: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(verification, "VERIFY_STEP", 1)
    page, pages = _follow_verification(auditor)
    assert "Chain OK: 3 sealed event(s) verified from seq 1." in page
    assert pages == 3  # one link per step; the last step finds the chain's end
    event = AuditEvent.objects.get(seq=3)
    _raw("UPDATE compliance_auditevent SET queue = 'forged' WHERE id = %s", [event.pk])
    page, pages = _follow_verification(auditor)
    assert f"Chain BROKEN at event {event.pk}" in page and "altered" in page
    assert "(2 event(s) verified before it)" in page
    # A step asked to go on after a deleted link names it, whatever the request says.
    _raw("DELETE FROM compliance_auditevent WHERE seq = 2", [])
    page = auditor.get(f"{BASE}verify/", {"after": 2, "checked": 1}).content.decode()
    assert "seq 2 is missing" in page
    assert auditor.get(f"{BASE}verify/", {"after": "x"}).status_code == 400


def test_the_list_finds_the_events_of_a_job_by_its_id(api: Api, auditor: Client) -> None:
    token = make_token("other", "*=*")
    first = push(api, token, queue="jobs:c")["id"]
    push(api, token, queue="jobs:c")
    page = auditor.get(BASE, {"q": first}).content.decode()
    assert page.count('class="field-action"') == 1
    event = AuditEvent.objects.get(action="push", queue="jobs:c", job_ids__icontains=first)
    assert f"/admin/compliance/auditevent/{event.pk}/change/" in page
    assert (
        auditor.get(BASE, {"q": first.upper()}).content.decode().count('class="field-action"') == 1
    )
    missing = auditor.get(BASE, {"q": "0190a1b2-0000-7000-8000-000000000001"})
    assert 'class="field-action"' not in missing.content.decode()


def test_the_export_takes_the_list_s_filters_and_search(api: Api, auditor: Client) -> None:
    listing = auditor.get(BASE, {"queue": "jobs:a", "action": "push"}).content.decode()
    [link] = re.findall(r'href="(export/\?[^"]+)" id="export-link"', listing)
    form = auditor.get(BASE + html.unescape(link)).content.decode()
    assert "queue = jobs:a" in form and "action = push" in form
    list_query = re.search(r'name="_changelist_filters" value="([^"]+)"', form)
    assert list_query is not None
    params = {
        "_changelist_filters": html.unescape(list_query.group(1)),
        "since": "2000-01-01 00:00",
        "until": "2100-01-01 00:00",
        "format": "csv",
    }
    rows = list(csv.DictReader(StringIO(auditor.get(f"{BASE}export/", params).content.decode())))
    assert [(row["action"], row["queue"]) for row in rows] == [("push", "jobs:a")]
    export = AuditEvent.objects.get(action="audit.export")
    assert export.details["count"] == 1
    assert export.details["list_filters"] == {"queue": "jobs:a", "action": "push"}
    job = rows[0]["job_ids"].strip('[]"')
    searched = {**params, "_changelist_filters": f"q={job}"}
    rows = list(csv.DictReader(StringIO(auditor.get(f"{BASE}export/", searched).content.decode())))
    assert [row["job_ids"] for row in rows] == [f'["{job}"]']


def test_the_export_command_takes_an_action_and_a_job_id(api: Api, auditor: Client) -> None:
    token = make_token("other", "*=*")
    job = push(api, token, queue="jobs:c")["id"]
    push(api, token, queue="jobs:c")
    out = StringIO()
    window = ("--since", "2000-01-01", "--until", "2100-01-01")
    call_command("audit_export", *window, "--job-id", job.upper(), stdout=out)
    [line] = out.getvalue().splitlines()
    assert json.loads(line)["job_ids"] == [job]
    out = StringIO()
    call_command("audit_export", *window, "--action", "token.create", stdout=out)
    assert {json.loads(line)["action"] for line in out.getvalue().splitlines()} == {"token.create"}
    export = AuditEvent.objects.filter(action="audit.export").order_by("id").first()
    assert export is not None and export.details["job_id"] == job
    with pytest.raises(CommandError, match="UUID"):
        call_command("audit_export", *window, "--job-id", "not-a-job", stdout=StringIO())


def test_the_list_s_filters_offer_choices_without_reading_the_whole_trail(
    auditor: Client,
) -> None:
    with CaptureQueriesContext(connection) as queries:
        page = auditor.get(BASE).content.decode()
    reads = [q["sql"] for q in queries.captured_queries if "compliance_auditevent" in q["sql"]]
    assert not [sql for sql in reads if "DISTINCT" in sql.upper()], reads
    assert "?queue=jobs%3Aa" in page and "?actor=token%3Asvc" in page
    assert "?action=gdpr.erase" in page  # an action the code records, seen or not
    assert "?created_at__gte=" in page  # the date filter's fixed choices
    # A value older than the choices still filters, and is offered while in use.
    filtered = auditor.get(BASE, {"queue": "jobs:b", "action": "push"}).content.decode()
    assert filtered.count('class="field-action"') == 1
