"""Revoking a token as a superuser clicks it (Playwright, Debian's chromium): select the
token, pick the action, read the confirmation page (which names the rotated twin), give
a reason, confirm, and see both tokens listed as revoked.

Runs with: apt-get install -y chromium && python3 dev.py test -m browser
"""

from __future__ import annotations

from typing import Any

from compliance.models import AuditEvent
from security.models import ApiToken
from security.services import parse_rule, token_create, token_rotate

from .browsers import BROWSER_MARKS, SETUP, log_in
from .personas import make_superuser

pytestmark = BROWSER_MARKS


def test_a_superuser_revokes_a_token_and_its_twin_with_a_reason(
    live_server: Any,
    browser: Any,
) -> None:
    root = make_superuser()
    token_create(name="billing", rules=[parse_rule("jobs:*=push", allow=True)], actor=SETUP)
    token_rotate(name="billing", overlap_hours=24, actor=SETUP)
    twin = ApiToken.objects.exclude(name="billing").get()
    page = log_in(browser, live_server.url, root)
    page.goto(f"{live_server.url}/admin/security/apitoken/")
    row = page.locator("#result_list tr:has(th.field-name a:text-is('billing'))")
    assert row.locator("td.field-state").inner_text() == "active"
    row.locator("input.action-select").check()
    page.select_option("select[name=action]", "revoke_tokens")
    page.click("button[name=index]")
    page.wait_for_selector("#confirm-form")
    assert twin.name in page.locator("#revoke-twins").inner_text()
    page.click("#confirm-form input[type=submit]")  # no reason yet: the form stays
    assert page.locator("#confirm-form").is_visible()
    assert page.locator("#id_reason").get_attribute("required") is not None
    assert not ApiToken.objects.filter(revoked_at__isnull=False).exists()
    page.fill("#id_reason", "INC-77 token pasted in a chat")
    page.click("#confirm-form input[type=submit]")
    page.wait_for_selector("text=Revoked 2 token(s).")
    states = page.locator("#result_list td.field-state").all_inner_texts()
    assert states == ["revoked", "revoked"]
    reasons = {
        event.details["reason"] for event in AuditEvent.objects.filter(action="token.revoke")
    }
    assert reasons == {"INC-77 token pasted in a chat"}
