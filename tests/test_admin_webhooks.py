"""Webhooks in the admin: added and changed through the service with a reason (one audit
event each, by the staff user), the URL checked as the API checks it; the signing
secret shown once after an add or a rotation and never on a later page; deleted by an
action with a reason; an operator acts only on the queues granted, an auditor only
looks, staff without rights see nothing."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from compliance.models import AuditEvent
from queues import services
from queues.models import Queue, Webhook

from .personas import logged_in, make_auditor, make_operator, make_staff, superuser_client
from .support import SETUP

pytestmark = pytest.mark.django_db
WEBHOOKS = "/admin/queues/webhook/"
URL = "https://hooks.example.com/flashq"


def _saved(queue: str, name: str) -> tuple[Webhook, str]:
    webhook, secret = services.webhook_save(
        queue_name=queue, name=name, url=URL, events=["completed"], actor=SETUP
    )
    assert secret is not None
    return webhook, secret


def _act(client: Client, action: str, chosen: list[Webhook], **extra: str) -> Any:
    ids = [str(w.pk) for w in chosen]
    return client.post(WEBHOOKS, {"action": action, "_selected_action": ids, **extra})


def test_an_add_calls_the_service_and_shows_the_secret_once() -> None:
    root = superuser_client()
    queue = Queue.objects.create(name="mail")
    page = root.post(
        f"{WEBHOOKS}add/",
        {
            "queue": queue.pk,
            "name": "h",
            "url": URL,
            "events": ["pushed", "failed"],
            "reason": "TICKET-1",
        },
    )
    assert page.status_code == 200, page.content[:2000]
    assert "no-store" in page["Cache-Control"]
    webhook = Webhook.objects.get()
    secret = webhook.secret
    assert secret in page.content.decode()
    assert webhook.events == ["pushed", "failed"]
    [event] = AuditEvent.objects.filter(action="webhook.save")
    assert (event.actor, event.details["reason"]) == ("user:root", "TICKET-1")
    assert secret not in str(event.details)
    # Never shown again: not on its page, not in the list.
    for later in (root.get(f"{WEBHOOKS}{webhook.pk}/change/"), root.get(WEBHOOKS)):
        assert later.status_code == 200
        assert secret not in later.content.decode()


def test_a_change_keeps_the_secret_and_an_internal_url_is_refused() -> None:
    root = superuser_client()
    webhook, secret = _saved("mail", "h")
    changed = root.post(
        f"{WEBHOOKS}{webhook.pk}/change/",
        {"url": "https://other.example.com/x", "events": ["completed"], "reason": "moved"},
    )
    assert changed.status_code == 302, changed.content[:2000]
    webhook.refresh_from_db()
    assert (webhook.url, webhook.secret) == ("https://other.example.com/x", secret)
    refused = root.post(
        f"{WEBHOOKS}{webhook.pk}/change/",
        {"url": "https://169.254.169.254/", "events": ["completed"], "reason": "x"},
    )
    assert refused.status_code == 200 and "may not name" in refused.content.decode()
    webhook.refresh_from_db()
    assert webhook.url == "https://other.example.com/x"


def test_rotate_shows_the_new_secret_once_and_delete_asks_a_reason() -> None:
    root = superuser_client()
    webhook, secret = _saved("mail", "h")
    asked = _act(root, "rotate_secrets", [webhook])
    assert asked.status_code == 200 and "reason" in asked.content.decode()
    assert Webhook.objects.get().secret == secret
    rotated = _act(root, "rotate_secrets", [webhook], confirm="1", reason="leaked")
    new = Webhook.objects.get().secret
    assert new != secret and new in rotated.content.decode()
    assert "no-store" in rotated["Cache-Control"]
    [event] = AuditEvent.objects.filter(action="webhook.rotateSecret")
    assert (event.actor, event.details) == ("user:root", {"name": "h", "reason": "leaked"})
    _act(root, "delete_webhooks", [webhook], confirm="1", reason="gone")
    assert not Webhook.objects.exists()
    [deleted] = AuditEvent.objects.filter(action="webhook.delete")
    assert deleted.details["reason"] == "gone"


def test_rights_follow_the_queue() -> None:
    mail, _ = _saved("mail", "h")
    billing, _ = _saved("billing", "h")
    olga = logged_in(make_operator("olga", "mail"))
    listed = olga.get(WEBHOOKS).content.decode()
    assert f"/{mail.pk}/change/" in listed and f"/{billing.pk}/change/" not in listed
    assert olga.get(f"{WEBHOOKS}{billing.pk}/change/").status_code in (302, 403, 404)
    _act(olga, "rotate_secrets", [mail, billing], confirm="1", reason="r")
    rotated = AuditEvent.objects.filter(action="webhook.rotateSecret")
    assert [e.queue for e in rotated] == ["mail"]

    auditor = logged_in(make_auditor())
    assert auditor.get(WEBHOOKS).status_code == 200
    assert auditor.get(f"{WEBHOOKS}add/").status_code == 403
    before = Webhook.objects.get(pk=mail.pk).secret
    _act(auditor, "rotate_secrets", [mail], confirm="1", reason="r")
    assert Webhook.objects.get(pk=mail.pk).secret == before

    nobody = logged_in(make_staff())
    assert nobody.get(WEBHOOKS).status_code == 403
