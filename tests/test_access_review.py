"""The access review: auditors (and superusers) see every token with its rules,
addresses, state and last use, and every staff user with their groups and queue
grants, on one read-only page (or CSV) linked from the admin's home; opening it is
recorded; operators and other staff are refused; no secret or hash is shown."""

from __future__ import annotations

import csv
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from compliance.models import AuditEvent
from queues.models import Queue
from queues.services import queue_grant
from security.models import ApiToken
from security.services import parse_rule, token_create

from .personas import StaffClient, logged_in, make_operator, make_staff, superuser_client
from .support import SETUP

pytestmark = pytest.mark.django_db

REVIEW = "/admin/access-review/"


@pytest.fixture
def world() -> None:
    call_command("setup_roles", stdout=StringIO())
    token_create(
        name="billing",
        rules=[
            parse_rule("payments:*=pull,ack", allow=True),
            parse_rule("payments:archive=*", allow=False),
        ],
        allowed_cidrs=["10.20.0.0/16"],
        actor=SETUP,
    )
    token_create(name="gone", rules=[parse_rule("x=push", allow=True)], actor=SETUP)
    ApiToken.objects.filter(name="gone").update(revoked_at=timezone.now())
    ApiToken.objects.filter(name="billing").update(last_used_at=timezone.now())
    Queue.objects.create(name="mail")
    Queue.objects.create(name="payments:eu")
    make_operator("olga", "mail")
    operators = Group.objects.get(name="Operators")
    queue_grant(queue_name="payments:eu", role="viewer", grantee=operators, actor=SETUP)


def _row(page: str, attribute: str, name: str) -> str:
    start = page.index(f'<tr data-{attribute}="{name}">')
    return page[start : page.index("</tr>", start)]


def test_an_auditor_reviews_tokens_rules_users_and_grants(
    world: None, auditor: StaffClient
) -> None:
    home = auditor.get("/admin/").content.decode()
    assert 'href="/admin/access-review/"' in home
    response = auditor.get(REVIEW)
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    page = response.content.decode()
    billing = _row(page, "token", "billing")
    assert "allow payments:* = pull,ack" in billing
    assert "deny payments:archive = *" in billing
    assert "10.20.0.0/16" in billing and ">active<" in billing
    assert "never" not in billing  # it was used
    assert ">revoked<" in _row(page, "token", "gone")
    olga = _row(page, "user", "olga")
    assert "Operators" in olga
    assert "queues.operate_queue on queues.queue mail" in olga
    assert "queues.view_queue on queues.queue payments:eu (via group Operators)" in olga
    assert "Auditors" in _row(page, "user", "audrey")
    for token in ApiToken.objects.all():
        assert token.secret_hash not in page
    for user in get_user_model().objects.all():
        assert user.password not in page
    [event] = AuditEvent.objects.filter(action="access.review")
    assert event.actor == "user:audrey"
    assert event.details == {"tokens": 2, "bootstrap_tokens": 0, "staff_users": 2, "format": "html"}


def test_the_review_downloads_as_csv_and_that_is_recorded(
    world: None, auditor: StaffClient
) -> None:
    response = auditor.get(REVIEW, {"format": "csv"})
    assert response["Content-Disposition"].startswith('attachment; filename="access-review-')
    rows = {
        (row["kind"], row["name"]): row
        for row in csv.DictReader(StringIO(response.content.decode()))
    }
    # Denies first: they win over any allow.
    assert (
        rows[("token", "billing")]["rules"] == "deny payments:archive=*; allow payments:*=pull,ack"
    )
    assert rows[("token", "gone")]["state"] == "revoked"
    assert "via group Operators" in rows[("staff", "olga")]["grants"]
    event = AuditEvent.objects.get(action="access.review")
    assert event.details["format"] == "csv"


def test_a_superuser_may_review_and_operators_and_other_staff_may_not(world: None) -> None:
    assert superuser_client().get(REVIEW).status_code == 200
    operator = logged_in(make_operator("oscar"))
    assert operator.get(REVIEW).status_code == 403
    assert 'href="/admin/access-review/"' not in operator.get("/admin/").content.decode()
    assert logged_in(make_staff()).get(REVIEW).status_code == 403
    anonymous = Client().get(REVIEW)
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    assert set(
        AuditEvent.objects.filter(action="access.review").values_list("actor", flat=True)
    ) == {"user:root"}


BOOTSTRAP = ["bootstrap-secret-" + "A7xQ" * 8, "bootstrap-other-" + "Zk3p" * 8]


def test_the_review_counts_bootstrap_tokens_and_says_what_they_may_do(
    world: None, auditor: StaffClient, settings: Any
) -> None:
    """Reported: AUTH_TOKENS act as * on * and the review did not mention them."""
    page = auditor.get(REVIEW).content.decode()
    assert "Bootstrap tokens (AUTH_TOKENS): 0 configured" in page
    settings.AUTH_TOKENS = BOOTSTRAP
    page = auditor.get(REVIEW).content.decode()
    start = page.index('id="review-bootstrap"')
    section = page[start : page.index("</div>", start)]
    assert "Bootstrap tokens (AUTH_TOKENS): 2 configured" in section
    assert "allow * = *" in section and "never admin, erase, metrics, reveal" in section
    assert "push" in section and "bootstrap:bootstrap-2" in section
    rows = list(csv.DictReader(StringIO(auditor.get(REVIEW, {"format": "csv"}).content.decode())))
    [bootstrap] = [row for row in rows if row["kind"] == "bootstrap"]
    assert bootstrap["name"] == "AUTH_TOKENS (2: bootstrap-1, bootstrap-2)"
    assert (bootstrap["rules"], bootstrap["allowed_cidrs"]) == ("allow *=*", "any address")
    events = AuditEvent.objects.filter(action="access.review").order_by("id")
    assert [event.details["bootstrap_tokens"] for event in events] == [0, 2, 2]
    # No secret, nor any part of one (not even a prefix), anywhere.
    shown = page + str(rows) + str([event.details for event in events])
    for secret in BOOTSTRAP:
        for part in (secret, secret[:12], secret[-12:], "A7xQ", "Zk3p"):
            assert part not in shown
