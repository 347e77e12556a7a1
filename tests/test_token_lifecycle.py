"""Token lifecycle: every token expires; last use is recorded without a write per
request; a refusal's audit event says why and which public id was tried."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from compliance.models import AuditEvent
from security import tokens
from security.models import ApiToken

from .personas import superuser_client
from .support import Api, clear_audit, make_token

pytestmark = pytest.mark.django_db


def _create(*args: str) -> str:
    out = StringIO()
    call_command("create_token", *args, stdout=out)
    return out.getvalue().strip().splitlines()[-1]


def test_create_token_defaults_to_90_days_and_caps_at_the_maximum(settings: Any) -> None:
    _create("svc", "--allow", "q=push")
    token = ApiToken.objects.get(name="svc")
    assert token.expires_at is not None
    assert timedelta(days=89) < token.expires_at - timezone.now() <= timedelta(days=90)
    with pytest.raises(CommandError, match="TOKEN_MAX_LIFETIME_DAYS"):
        _create("long", "--allow", "q=push", "--expires-in", "366")
    settings.TOKEN_MAX_LIFETIME_DAYS = 30
    with pytest.raises(CommandError):
        _create("long", "--allow", "q=push", "--expires-in", "31")
    assert not ApiToken.objects.filter(name="long").exists()


def test_the_maximum_lifetime_holds_whatever_expiry_is_stored(api: Api, settings: Any) -> None:
    raw = make_token("svc", "q=push")
    assert api.post("/queues/q/jobs", {"data": {}}, as_=raw).status == 201
    # A token from before expiry was mandatory, or a policy lowered since.
    ApiToken.objects.filter(name="svc").update(
        created_at=timezone.now() - timedelta(days=40),
        expires_at=timezone.now() + timedelta(days=300),
    )
    settings.TOKEN_MAX_LIFETIME_DAYS = 30
    assert api.post("/queues/q/jobs", {"data": {}}, as_=raw).status == 401
    assert AuditEvent.objects.order_by("id").last().details["auth"] == "expired"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("date", "message"),
    [("", "This field is required"), ("2099-01-01", "At most 365 days after")],
)
def test_the_admin_refuses_a_token_without_expiry_or_beyond_the_cap(
    date: str, message: str
) -> None:
    make_token("svc", "q=push")
    token = ApiToken.objects.get()
    before = token.expires_at
    client = superuser_client()
    form = {
        "name": "svc",
        "expires_at_0": date,
        "expires_at_1": "00:00:00" if date else "",
        "permissions-TOTAL_FORMS": "0",
        "permissions-INITIAL_FORMS": "0",
        "_save": "Save",
    }
    response = client.post(f"/admin/security/apitoken/{token.pk}/change/", form)
    assert response.status_code == 200
    assert message in " ".join(response.context["adminform"].form.errors["expires_at"])
    token.refresh_from_db()
    assert token.expires_at == before


def _token_updates(queries: CaptureQueriesContext) -> int:
    return sum(q["sql"].startswith('UPDATE "security_apitoken"') for q in queries.captured_queries)


def test_last_use_is_written_at_most_every_few_minutes_with_the_ip(api: Api) -> None:
    raw = make_token("svc", "q=push")
    with CaptureQueriesContext(connection) as queries:
        for _ in range(5):
            api.client.get(
                "/api/v1/queues", HTTP_AUTHORIZATION=f"Bearer {raw}", REMOTE_ADDR="198.51.100.4"
            )
    assert _token_updates(queries) == 1
    token = ApiToken.objects.get()
    assert token.last_used_ip == "198.51.100.4" and token.last_used_at is not None
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now() - timedelta(minutes=6))
    with CaptureQueriesContext(connection) as queries:
        api.client.get(
            "/api/v1/queues", HTTP_AUTHORIZATION=f"Bearer {raw}", REMOTE_ADDR="203.0.113.8"
        )
    assert _token_updates(queries) == 1
    assert ApiToken.objects.get().last_used_ip == "203.0.113.8"


def test_a_401_event_says_why_and_which_public_id_but_never_the_secret(
    api: Api, settings: Any
) -> None:
    good = make_token("good", "q=push")
    parts = tokens.parse(good)
    assert parts is not None
    gone = make_token("gone", "q=push")
    revoked = ApiToken.objects.get(name="gone")
    ApiToken.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())
    unknown, unknown_parts = tokens.generate()
    wrong = f"{tokens.PREFIX}{parts.public_id}_{tokens.generate()[1].secret}"
    wrong += tokens.checksum(wrong)
    bad_checksum = good[:-1] + ("0" if good[-1] != "0" else "1")
    cases = {
        unknown: ("unknown", unknown_parts.public_id),
        gone: ("revoked", revoked.public_id),
        wrong: ("bad_secret", parts.public_id),
        bad_checksum: ("malformed", None),
        "not-a-token": ("malformed", None),
    }
    for presented, (reason, public_id) in cases.items():
        clear_audit()
        assert api.post("/queues/q/jobs", {"data": {}}, as_=presented).status == 401
        event = AuditEvent.objects.get()
        assert event.details.get("auth") == reason
        assert event.details.get("public_id") == public_id
        secret = presented.rpartition("_")[2]
        assert secret not in str(event.details)


def test_me_describes_the_calling_token_and_never_its_hash(api: Api, settings: Any) -> None:
    from queues.api import serializers

    out = StringIO()
    call_command(
        "create_token",
        "svc",
        "--allow",
        "jobs:*=push,getJob",
        "--deny",
        "jobs:secret=*",
        "--cidr",
        "10.0.0.0/8",
        stdout=out,
    )
    raw = out.getvalue().strip().splitlines()[-1]
    response = api.client.get(
        "/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {raw}", REMOTE_ADDR="10.1.2.3"
    )
    assert response.status_code == 200
    body = response.json()
    token = ApiToken.objects.get()
    assert body["name"] == "svc" and body["bootstrap"] is False
    assert body["allowed_cidrs"] == ["10.0.0.0/8"]
    assert body["expires_at"] == token.expires_at.isoformat().replace("+00:00", "Z")  # type: ignore[union-attr]
    assert body["permissions"] == [
        {"effect": "allow", "pattern": "jobs:*", "verbs": ["push", "getJob"]},
        {"effect": "deny", "pattern": "jobs:secret", "verbs": ["*"]},
    ]
    assert token.secret_hash not in response.content.decode()
    assert body["family"] == token.family
    assert set(body) == set(serializers.MeOut().fields)
    event = AuditEvent.objects.order_by("id").last()
    assert event is not None and (event.action, event.actor) == ("me", "token:svc")

    settings.AUTH_TOKENS = ["Zq8-x1Y2z3W4v5U6t7S8r9Q0pK3m9"]
    boot = api.get("/me", as_=settings.AUTH_TOKENS[0]).body
    assert (boot["bootstrap"], boot["expires_at"], boot["permissions"]) == (
        True,
        None,
        [{"effect": "allow", "pattern": "*", "verbs": ["*"]}],
    )
