"""Revoking and rotating tokens in the admin, as the API's rules ask: revocation asks
for a reason on a confirmation page and takes the whole family (a rotated twin
included) unless told otherwise; rotation keeps the token's lifetime; the list says
what a token is in words."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from compliance.models import AuditEvent
from security.models import ApiToken
from security.services import token_create, token_rotate

from .support import SETUP, Api, make_token

pytestmark = pytest.mark.django_db

TOKENS = "/admin/security/apitoken/"


def _works(api: Api, raw: str) -> bool:
    return api.post("/queues/jobs:a/jobs", {"data": {}}, as_=raw).status == 201


def _rotated(name: str) -> tuple[str, str]:
    """A token and its rotated twin, both working (the old one is in its overlap)."""
    old = make_token(name, "jobs:*=push")
    _, new = token_rotate(name=name, overlap_hours=24, actor=SETUP)
    return old, new


def test_revoking_asks_for_confirmation_and_a_reason_first(api: Api, root: Client) -> None:
    old, new = _rotated("svc")
    token = ApiToken.objects.get(name="svc")
    selected = {"action": "revoke_tokens", "_selected_action": [token.pk]}
    page = root.post(TOKENS, selected)
    assert page.status_code == 200
    text = page.content.decode()
    assert 'id="confirm-form"' in text and 'name="reason"' in text
    twin = ApiToken.objects.exclude(pk=token.pk).get()
    assert twin.name in text  # the page names the twin that goes too
    no_reason = root.post(TOKENS, {**selected, "confirm": "yes", "reason": ""})
    assert no_reason.status_code == 200 and "This field is required" in no_reason.content.decode()
    assert not ApiToken.objects.filter(revoked_at__isnull=False).exists()
    assert not AuditEvent.objects.filter(action="token.revoke").exists()
    assert _works(api, old) and _works(api, new)


def test_revoking_with_a_reason_revokes_the_rotated_twin_too(api: Api, root: Client) -> None:
    old, new = _rotated("svc")
    token = ApiToken.objects.get(name="svc")
    done = root.post(
        TOKENS,
        {
            "action": "revoke_tokens",
            "_selected_action": [token.pk],
            "confirm": "yes",
            "reason": "INC-99 secret pasted in a ticket",
        },
    )
    assert done.status_code == 302
    assert not _works(api, new) and not _works(api, old)
    assert ApiToken.objects.filter(revoked_at__isnull=True).count() == 0
    events = list(AuditEvent.objects.filter(action="token.revoke").order_by("id"))
    assert sorted(event.details["token_id"] for event in events) == sorted(
        ApiToken.objects.values_list("pk", flat=True)
    )
    for event in events:
        assert event.actor == "user:root"
        assert event.details["reason"] == "INC-99 secret pasted in a ticket"
        assert event.details["whole_family"] is True


def test_only_the_selected_token_when_asked(api: Api, root: Client) -> None:
    old, new = _rotated("svc")
    twin = ApiToken.objects.exclude(name="svc").get()
    root.post(
        TOKENS,
        {
            "action": "revoke_tokens",
            "_selected_action": [twin.pk],
            "confirm": "yes",
            "reason": "old host retired",
            "only_this": "on",
        },
    )
    assert not _works(api, old) and _works(api, new)
    [event] = AuditEvent.objects.filter(action="token.revoke")
    assert event.details["whole_family"] is False and event.details["token_id"] == twin.pk


def test_rotation_in_the_admin_keeps_the_token_s_lifetime(root: Client) -> None:
    token_create(name="svc", rules=[], expires_in_days=30, actor=SETUP)
    token = ApiToken.objects.get(name="svc")
    root.post(TOKENS, {"action": "rotate_tokens", "_selected_action": [token.pk]})
    new = ApiToken.objects.get(name="svc")
    assert new.pk != token.pk and new.expires_at is not None
    assert timedelta(days=29, hours=23) < new.expires_at - timezone.now() <= timedelta(days=30)


def test_the_token_list_says_active_revoked_or_expired_in_words(root: Client) -> None:
    for name in ("alive", "gone", "old"):
        make_token(name, "jobs:*=push")
    ApiToken.objects.filter(name="gone").update(revoked_at=timezone.now())
    ApiToken.objects.filter(name="old").update(expires_at=timezone.now() - timedelta(days=1))
    page = root.get(TOKENS).content.decode()
    states = dict(
        re.findall(
            r'<th class="field-name"><a [^>]*>([^<]+)</a></th>'
            r'.*?<td class="field-state">([^<]*)</td>',
            page,
            flags=re.S,
        )
    )
    assert states == {"alive": "active", "gone": "revoked", "old": "expired"}
    assert "icon-yes.svg" not in page and "icon-no.svg" not in page
