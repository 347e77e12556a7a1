"""Key rotation covers schedule templates: ``rotate_encryption_keys`` re-seals each
schedule's data under the primary key and counts templates in its "values by key"
report, so an operator never retires a key a template still needs (a template under a
retired key would stop firing)."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from compliance.models import AuditEvent
from queues import services
from queues.models import Schedule, Webhook
from queues.schedulespec import parse_schedule_spec
from security.encryption import generate_key, key_id_of

from .support import SETUP

pytestmark = pytest.mark.django_db

MARK = "template-marker-91c2"
K1, K2 = f"k1:{generate_key()}", f"k2:{generate_key()}"


def _save(name: str) -> None:
    spec = parse_schedule_spec({"every_ms": 60_000, "data": {"name": name, "note": MARK}})
    services.schedule_save(
        queue_name="jobs:keys", name=name, spec=spec, owner="family:x", actor=SETUP
    )


def _key_ids() -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, data FROM queues_schedule")
        return {name: key_id_of(bytes(data)) for name, data in cursor.fetchall()}


def test_rotation_reseals_schedule_templates_and_reports_them(settings: Any) -> None:
    settings.ENCRYPTION_KEYS = K1
    for name in ("a", "b", "c"):
        _save(name)
    settings.ENCRYPTION_KEYS = f"{K2},{K1}"
    _save("d")  # saved under the new primary already
    assert _key_ids() == {"a": "k1", "b": "k1", "c": "k1", "d": "k2"}
    # One batch of two: a rerun only does what is left.
    first = services.schedules_reseal(after=None, limit=2, actor=SETUP)
    assert (first.scanned, first.changed, first.found) == (2, 2, {"k1": 2})
    out = StringIO()
    call_command("rotate_encryption_keys", "--batch-size", "2", stdout=out)
    report = out.getvalue()
    # The operator sees the template still under k1 before the run.
    assert (
        "Scanned 0 job(s), 4 schedule(s) and 0 webhook(s); values by key before: k1: 1, k2: 3."
        in report
    )
    assert (
        "Re-encrypted 1 value(s) in 0 job(s), 1 schedule(s) and 0 webhook secret(s) under key 'k2'"
        in report
    )
    assert set(_key_ids().values()) == {"k2"}
    settings.ENCRYPTION_KEYS = K2  # k1 retired: every template still opens
    assert {s.name: s.data["name"] for s in Schedule.objects.all()} == {
        "a": "a", "b": "b", "c": "c", "d": "d"
    }  # fmt: skip
    again = StringIO()
    call_command("rotate_encryption_keys", stdout=again)
    assert "values by key before: k2: 4." in again.getvalue()
    events = AuditEvent.objects.filter(action="keys.rotate").order_by("id")
    assert sum(e.details["schedules"] for e in events) == 3
    assert all(e.details["from_keys"] == ["k1"] for e in events)
    assert MARK not in json.dumps([e.details for e in events])


def test_rotation_without_a_templates_old_key_stops_and_changes_nothing(settings: Any) -> None:
    settings.ENCRYPTION_KEYS = K1
    _save("a")
    settings.ENCRYPTION_KEYS = K2
    with pytest.raises(CommandError, match="'k1' is not in ENCRYPTION_KEYS") as caught:
        call_command("rotate_encryption_keys", stdout=StringIO())
    assert MARK not in str(caught.value)
    assert _key_ids() == {"a": "k1"}
    assert not AuditEvent.objects.filter(action="keys.rotate").exists()


def test_rotation_reseals_webhook_secrets(settings: Any) -> None:
    """A webhook's secret under a retired key could no longer sign its deliveries."""
    settings.ENCRYPTION_KEYS = K1
    _, secret = services.webhook_save(
        queue_name="jobs:keys", name="h", url="https://hooks.example.com/", events=["failed"],
        actor=SETUP,
    )  # fmt: skip
    settings.ENCRYPTION_KEYS = f"{K2},{K1}"
    out = StringIO()
    call_command("rotate_encryption_keys", stdout=out)
    assert "and 1 webhook(s); values by key before: k1: 1." in out.getvalue()
    assert "1 webhook secret(s) under key 'k2'" in out.getvalue()
    settings.ENCRYPTION_KEYS = K2  # k1 retired: the secret still opens
    assert Webhook.objects.get().secret == secret
