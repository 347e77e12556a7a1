"""Admin logins: failures are throttled per username and per client address (django-axes,
in the database, so on every app server) and every login, failure and lockout is an
audit event."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from compliance.models import AuditEvent

from .personas import make_staff, make_superuser
from .support import clear_audit

pytestmark = pytest.mark.django_db

PASSWORD = "right-horse-battery-staple"


@pytest.fixture(autouse=True)
def accounts(settings: Any) -> None:
    settings.AXES_FAILURE_LIMIT = 3
    make_superuser(password=PASSWORD)
    make_staff("ops", password=PASSWORD)


def _login(username: str, password: str, ip: str) -> int:
    client = Client(REMOTE_ADDR=ip)
    form = {"username": username, "password": password, "next": "/admin/"}
    return int(client.post("/admin/login/", form).status_code)


def test_a_good_login_is_recorded(settings: Any) -> None:
    assert _login("root", PASSWORD, "192.0.2.1") == 302
    event = AuditEvent.objects.get(action="admin.login")
    assert (event.actor, event.client_ip, event.status) == ("user:root", "192.0.2.1", 200)


def test_failures_lock_out_the_account_and_the_address(settings: Any) -> None:
    for _ in range(2):
        assert _login("root", "wrong", "192.0.2.1") == 200  # the form again
    assert _login("root", "wrong", "192.0.2.1") == 429  # the limit'th failure locks out
    # Locked out: even the right password gets 429, from anywhere, for this account...
    assert _login("root", PASSWORD, "192.0.2.1") == 429
    assert _login("root", PASSWORD, "198.51.100.2") == 429
    # ...and this address is locked out for every account.
    assert _login("ops", PASSWORD, "192.0.2.1") == 429
    assert _login("ops", PASSWORD, "198.51.100.2") == 302
    failures = AuditEvent.objects.filter(action="admin.loginFailed")
    assert {(e.actor, e.client_ip, e.status) for e in failures} == {("user:root", "192.0.2.1", 401)}
    lockouts = AuditEvent.objects.filter(action="admin.lockout")
    assert lockouts.exists() and {e.status for e in lockouts} == {429}


def test_a_locked_out_flood_leaves_a_bounded_summary() -> None:
    for _ in range(3):
        _login("root", "wrong", "192.0.2.9")
    clear_audit()
    for _ in range(20):
        assert _login("root", "wrong", "192.0.2.9") == 429
    # The lockout itself was attempt 1 of the window; of the next 20, only the 2nd, 4th,
    # 8th and 16th are recorded.
    attempts = [e.details["attempts"] for e in AuditEvent.objects.order_by("id")]
    assert attempts == ["2", "4", "8", "16"]


def test_a_failure_for_an_unknown_name_does_not_record_what_was_typed() -> None:
    assert _login("alice@example.com", "guess", "192.0.2.7") == 200
    event = AuditEvent.objects.get(action="admin.loginFailed")
    assert event.actor == "anonymous" and "alice" not in str(event.details)
