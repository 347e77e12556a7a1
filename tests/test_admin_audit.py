"""The audit trail in the admin: filters, the chain's status and verification, and an
export (CSV or JSON Lines) that auditors may run and that is itself audited."""

from __future__ import annotations

import csv
import json
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client

from compliance import chain
from compliance.models import AuditEvent

from .support import Api, make_token, push
from .test_audit_chain import _raw

pytestmark = pytest.mark.django_db
BASE = "/admin/compliance/auditevent/"


@pytest.fixture
def auditor(api: Api) -> Client:
    call_command("setup_roles", stdout=StringIO())
    token = make_token("svc", "*=*,admin")
    push(api, token, queue="jobs:a")
    push(api, token, queue="jobs:b")
    chain.seal_all()
    user = get_user_model().objects.create_user("audrey", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name="Auditors"))
    client = Client()
    client.force_login(user)
    return client


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
