"""django-auditlog keeps field-level diffs of configuration (queues, tokens, permission
rules, retention policies) beside the audit trail: never a token's hash, the staff user
as actor in the admin, and our request id as correlation id, so an entry joins its
audit event."""

from __future__ import annotations

import pytest
from auditlog.models import LogEntry
from django.test import Client

from compliance.models import AuditEvent
from queues.models import Queue
from security.models import ApiToken

from .personas import make_full_token, superuser_client
from .support import Api, make_token, push

pytestmark = pytest.mark.django_db


def _entries(model: type) -> list[LogEntry]:
    return list(LogEntry.objects.get_for_model(model).order_by("id"))


def test_token_changes_are_diffed_without_the_hash(api: Api) -> None:
    make_token("svc", "jobs:*=push")
    token = ApiToken.objects.get(name="svc")
    [created] = _entries(ApiToken)
    assert created.action == LogEntry.Action.CREATE
    assert "name" in created.changes and "secret_hash" not in created.changes
    assert token.secret_hash not in repr(LogEntry.objects.values_list("changes", "changes_text"))
    rules = [e for e in LogEntry.objects.all() if e.content_type.model == "queuepermission"]
    assert rules and "jobs:*" in repr(rules[0].changes)


def test_admin_changes_name_the_staff_user_and_join_the_audit_event(api: Api) -> None:
    full = make_full_token()
    push(api, full, queue="jobs:q")
    queue = Queue.objects.get(name="jobs:q")
    root: Client = superuser_client()
    form = {"subject_path": "user.id", "_save": "Save"}
    response = root.post(f"/admin/queues/queue/{queue.pk}/change/", form)
    assert response.status_code == 302
    entry = _entries(Queue)[-1]
    assert entry.actor is not None and entry.actor.get_username() == "root"
    assert entry.changes["subject_path"] == ["userId", "user.id"]
    event = AuditEvent.objects.get(action="queue.update")
    assert entry.cid == event.request_id == response["X-Request-ID"]
