"""The admin as a staff user clicks it (Django's test client): every change goes through
a service and is audited with the staff user as actor; state that services own (a
token's revocation, a queue's pause) is never a form field."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import IntegrityError, connection, transaction
from django.test import Client
from django.utils import timezone

from compliance.models import AuditEvent
from queues.models import Queue
from security.models import ApiToken, QueuePermission

from .personas import logged_in, make_staff
from .support import Api, make_token, pull, push

pytestmark = pytest.mark.django_db

TOKENS = "/admin/security/apitoken/"
QUEUES = "/admin/queues/queue/"


@pytest.fixture
def viewer() -> Client:
    """A staff user who may look at tokens and queues but change nothing."""
    user = make_staff("viewer")
    user.user_permissions.set(
        Permission.objects.filter(codename__in=["view_apitoken", "view_queue"])
    )
    return logged_in(user)


def _token_form(
    token: ApiToken, rules: list[tuple[str, str, str]], **fields: Any
) -> dict[str, Any]:
    """The change form of a token as the browser posts it, with ``rules`` as the
    permissions inline (existing rows first, by position)."""
    existing = list(token.permissions.order_by("id"))
    data: dict[str, Any] = {
        "name": token.name,
        "expires_at_0": f"{token.expires_at:%Y-%m-%d}" if token.expires_at else "",
        "expires_at_1": f"{token.expires_at:%H:%M:%S}" if token.expires_at else "",
        "permissions-TOTAL_FORMS": str(len(rules)),
        "permissions-INITIAL_FORMS": str(len(existing)),
        "permissions-MIN_NUM_FORMS": "0",
        "permissions-MAX_NUM_FORMS": "1000",
        "_save": "Save",
    }
    for index, (pattern, verbs, effect) in enumerate(rules):
        row = f"permissions-{index}-"
        data[row + "token"] = str(token.pk)
        data[row + "id"] = str(existing[index].pk) if index < len(existing) else ""
        data[row + "pattern"] = pattern
        data[row + "verbs"] = verbs
        data[row + "effect"] = effect
    data.update(fields)
    return data


def _events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


# -- tokens ------------------------------------------------------------------------------


def test_a_revoked_token_stays_revoked_when_its_form_is_saved(api: Api, root: Client) -> None:
    raw = make_token("svc", "jobs:*=push")
    call = root.post(
        f"{TOKENS}?q=svc",
        {
            "action": "revoke_tokens",
            "_selected_action": [ApiToken.objects.get(name="svc").pk],
            "confirm": "yes",
            "reason": "INC-1",
        },
    )
    assert call.status_code == 302
    token = ApiToken.objects.get(name="svc")
    revoked_at = token.revoked_at
    assert revoked_at is not None
    assert api.post("/queues/jobs:a/jobs", {"data": {}}, as_=raw).status == 401

    # The old bug: untick "Revoked" and save. There is no such field any more; a forged
    # one is ignored, and the token stays refused.
    form = _token_form(token, [("jobs:*", "push", "allow")], revoked="", revoked_at="")
    assert root.post(f"{TOKENS}{token.pk}/change/", form).status_code == 302
    token.refresh_from_db()
    assert token.revoked_at == revoked_at
    assert api.post("/queues/jobs:a/jobs", {"data": {}}, as_=raw).status == 401

    [revoke] = _events("token.revoke")
    assert (revoke.actor, revoke.user_id, revoke.client_ip) == (
        "user:root",
        get_user_model().objects.get(username="root").pk,
        "192.0.2.10",
    )
    assert revoke.details["token_name"] == "svc" and not revoke.details["already_revoked"]
    assert revoke.details["reason"] == "INC-1"
    [update] = _events("token.update")
    assert update.actor == "user:root" and update.details["changes"] == {}
    assert not LogEntry.objects.exists()


def test_no_path_can_un_revoke_a_token() -> None:
    make_token("svc", "jobs:*=push")
    ApiToken.objects.filter(name="svc").update(revoked_at=timezone.now())
    for moved_to in (None, timezone.now()):
        with pytest.raises(IntegrityError), transaction.atomic():
            ApiToken.objects.filter(name="svc").update(revoked_at=moved_to)
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE security_apitoken SET revoked_at = NULL")
    assert ApiToken.objects.get(name="svc").revoked


def test_a_revoked_token_s_credentials_cannot_be_moved_or_reinserted(api: Api) -> None:
    """Not even by raw SQL from the application: the public id and secret hash never
    change, and a revoked public id can never be carried by a token row again."""
    old_raw = make_token("old", "jobs:*=push")
    make_token("fresh", "jobs:*=push")
    ApiToken.objects.filter(name="old").update(revoked_at=timezone.now())
    old = ApiToken.objects.get(name="old")
    attempts: list[tuple[str, dict[str, str]]] = [
        ("old", {"public_id": "zzzzzzzzzzzz"}),
        ("fresh", {"public_id": old.public_id, "secret_hash": old.secret_hash}),
        ("fresh", {"secret_hash": old.secret_hash}),
    ]
    for name, change in attempts:
        with pytest.raises(IntegrityError), transaction.atomic():
            ApiToken.objects.filter(name=name).update(**change)
    ApiToken.objects.filter(name="old").delete()  # allowed: the id stays revoked
    with pytest.raises(IntegrityError), transaction.atomic():
        ApiToken.objects.create(
            name="old-again", public_id=old.public_id, secret_hash=old.secret_hash
        )
    if connection.vendor == "sqlite":
        with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "INSERT OR REPLACE INTO security_apitoken "
                "(name, public_id, secret_hash, created_at) VALUES (%s, %s, %s, %s)",
                ["x", old.public_id, old.secret_hash, timezone.now()],
            )
    forgets = ["UPDATE security_revokedpublicid SET public_id = 'other'"]
    if connection.vendor == "postgresql":  # SQLite: see security migration 0002
        forgets.append("DELETE FROM security_revokedpublicid")
    for forget in forgets:
        with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(forget)
    assert api.post("/queues/jobs:a/jobs", {"data": {}}, as_=old_raw).status == 401


def test_a_staff_user_without_rights_on_rules_can_rename_and_the_rules_stay(
    api: Api,
) -> None:
    raw = make_token("svc", "jobs:*=push")
    token = ApiToken.objects.get()
    user = make_staff("ops")
    rights = ["view_apitoken", "change_apitoken"]
    for extra in ([], ["view_queuepermission"], ["add_queuepermission"]):
        user.user_permissions.set(Permission.objects.filter(codename__in=rights + extra))
        client = logged_in(user)
        name = f"svc-{len(extra)}-{''.join(extra)}"[:100]
        form = _token_form(token, [("jobs:*", "push", "allow")], name=name)
        if not extra:  # no inline at all: no management form is posted
            form = {k: v for k, v in form.items() if not k.startswith("permissions-")}
        response = client.post(f"{TOKENS}{token.pk}/change/", form)
        assert response.status_code == 302, response.content[:2000]
        token.refresh_from_db()
        assert token.name == name
        rules = list(token.permissions.values_list("pattern", "verbs", "effect"))
        assert rules == [("jobs:*", "push", "allow")]
    assert api.post("/queues/jobs:a/jobs", {"data": {}}, as_=raw).status == 201


def test_editing_a_token_goes_through_the_service_and_is_audited(api: Api, root: Client) -> None:
    raw = make_token("svc", "jobs:*=push")
    token = ApiToken.objects.get(name="svc")
    form = _token_form(
        token,
        [("jobs:*", "push,getJob", "allow"), ("jobs:secret", "*", "deny")],
        name="svc-renamed",
        expires_at_0=f"{timezone.now() + timedelta(days=200):%Y-%m-%d}",
        expires_at_1="03:04:05",
    )
    assert root.post(f"{TOKENS}{token.pk}/change/", form).status_code == 302
    token.refresh_from_db()
    assert token.name == "svc-renamed" and token.expires_at is not None
    rules = {(p.pattern, p.verbs, p.effect) for p in token.permissions.all()}
    assert rules == {("jobs:*", "push,getJob", "allow"), ("jobs:secret", "*", "deny")}
    assert api.post("/queues/jobs:secret/jobs", {"data": {}}, as_=raw).status == 403
    [event] = _events("token.update")
    assert event.actor == "user:root"
    changes = event.details["changes"]
    assert changes["name"] == {"from": "svc", "to": "svc-renamed"}
    assert changes["rules"]["to"] == ["allow jobs:*=push,getJob", "deny jobs:secret=*"]
    assert set(changes) == {"name", "expires_at", "rules"}
    assert token.secret_hash not in str(event.details)


@pytest.mark.parametrize(
    ("pattern", "verbs", "field", "message"),
    [
        ("jobs:*", "psh", "verbs", "unknown verb(s): psh"),
        ("jobs:*", "push,", "verbs", None),  # a trailing comma is tidied, not an error
        ("jobs:[0-9]", "push", "pattern", "a queue pattern is"),
        ("jobs:(a|b)", "push", "pattern", "a queue pattern is"),
        ("q" * 129, "push", "pattern", "at most 128 characters"),
        ("jobs:*", "", "verbs", "This field is required"),
    ],
)
def test_a_bad_permission_rule_is_refused_in_the_form_and_nothing_changes(
    api: Api, root: Client, pattern: str, verbs: str, field: str, message: str | None
) -> None:
    raw = make_token("svc", "jobs:*=push")
    token = ApiToken.objects.get(name="svc")
    before = AuditEvent.objects.count()
    form = _token_form(token, [("jobs:*", "push", "allow"), (pattern, verbs, "allow")])
    response = root.post(f"{TOKENS}{token.pk}/change/", form)
    if message is None:
        assert response.status_code == 302
        assert set(token.permissions.values_list("verbs", flat=True)) == {"push"}
        return
    assert response.status_code == 200  # the form again, with the error at the field
    [formset] = response.context["inline_admin_formsets"]
    errors = formset.formset.forms[1].errors
    assert message in " ".join(errors[field])
    assert token.permissions.count() == 1
    assert AuditEvent.objects.count() == before
    assert api.post("/queues/jobs:a/jobs", {"data": {}}, as_=raw).status == 201


def test_the_model_create_token_and_the_admin_give_the_same_message() -> None:
    from django.core.exceptions import ValidationError
    from django.core.management import call_command
    from django.core.management.base import CommandError

    make_token("svc", "jobs:*=push")
    rule = QueuePermission(token=ApiToken.objects.get(), pattern="jobs:*", verbs="psh")
    with pytest.raises(ValidationError) as model_error:
        rule.full_clean()
    with pytest.raises(CommandError) as command_error:
        call_command("create_token", "other", "--allow", "jobs:*=psh")
    assert model_error.value.message_dict["verbs"] == [str(command_error.value)]


def test_tokens_cannot_be_deleted_in_the_admin(root: Client) -> None:
    make_token("svc", "jobs:*=push")
    token = ApiToken.objects.get()
    root.post(f"{TOKENS}{token.pk}/delete/", {"post": "yes"})
    assert ApiToken.objects.filter(pk=token.pk).exists()


def _new_token_form(name: str, rules: list[tuple[str, str, str]]) -> dict[str, Any]:
    expires = timezone.now() + timedelta(days=30)
    data: dict[str, Any] = {
        "name": name,
        "expires_at_0": f"{expires:%Y-%m-%d}",
        "expires_at_1": f"{expires:%H:%M:%S}",
        "allowed_cidrs": "[]",
        "rate_limit": "",
        "permissions-TOTAL_FORMS": str(len(rules)),
        "permissions-INITIAL_FORMS": "0",
        "permissions-MIN_NUM_FORMS": "0",
        "permissions-MAX_NUM_FORMS": "1000",
        "_save": "Save",
    }
    for index, (pattern, verbs, effect) in enumerate(rules):
        data |= {
            f"permissions-{index}-pattern": pattern,
            f"permissions-{index}-verbs": verbs,
            f"permissions-{index}-effect": effect,
        }
    return data


def _secrets(page: Any) -> list[str]:
    import re

    return re.findall(r'<code class="secret">(fq_[^<]+)</code>', page.content.decode())


def test_a_token_created_in_the_admin_is_shown_once_and_works(api: Api, root: Client) -> None:
    page = root.post(f"{TOKENS}add/", _new_token_form("billing", [("jobs:*", "push", "allow")]))
    assert page.status_code == 200 and "no-store" in page["Cache-Control"]
    [secret] = _secrets(page)
    assert api.post("/queues/jobs:a/jobs", {"data": {}}, as_=secret).status == 201
    assert api.post("/queues/other/jobs", {"data": {}}, as_=secret).status == 403
    token = ApiToken.objects.get(name="billing")
    assert secret not in root.get(f"{TOKENS}{token.pk}/change/").content.decode()
    assert secret not in root.get(TOKENS).content.decode()  # no message carries it
    event = AuditEvent.objects.get(action="token.create")
    assert event.actor == "user:root" and secret not in str(event.details)
    assert token.expires_at is not None
    assert timedelta(days=29) < token.expires_at - timezone.now() <= timedelta(days=31)


def test_rotation_in_the_admin_shows_the_new_secret_once(api: Api, root: Client) -> None:
    old = make_token("svc", "jobs:*=push")
    token = ApiToken.objects.get()
    page = root.post(TOKENS, {"action": "rotate_tokens", "_selected_action": [token.pk]})
    [new] = _secrets(page)
    assert new != old and api.post("/queues/jobs:a/jobs", {"data": {}}, as_=new).status == 201
    assert api.post("/queues/jobs:a/jobs", {"data": {}}, as_=old).status == 201  # overlap
    token.refresh_from_db()
    assert token.expires_at is not None
    assert token.expires_at <= timezone.now() + timedelta(hours=24, seconds=5)
    assert AuditEvent.objects.filter(action="token.rotate", actor="user:root").exists()


def test_a_view_only_staff_user_can_neither_revoke_nor_edit(api: Api, viewer: Client) -> None:
    raw = make_token("svc", "jobs:*=push")
    token = ApiToken.objects.get()
    page = viewer.get(TOKENS)
    assert page.status_code == 200 and b"revoke_tokens" not in page.content
    viewer.post(TOKENS, {"action": "revoke_tokens", "_selected_action": [token.pk]})
    form = _token_form(token, [("*", "*", "allow")], name="stolen")
    assert viewer.post(f"{TOKENS}{token.pk}/change/", form).status_code == 403
    token.refresh_from_db()
    assert not token.revoked and token.name == "svc"
    assert api.post("/queues/jobs:a/jobs", {"data": {}}, as_=raw).status == 201
    assert not AuditEvent.objects.filter(actor="user:viewer").exclude(action="admin.login").exists()


# -- queues ------------------------------------------------------------------------------


def test_pause_and_resume_are_admin_actions_through_the_service(
    api: Api, root: Client, full: str
) -> None:
    push(api, full, queue="jobs:q")
    queue = Queue.objects.get(name="jobs:q")
    selected = {"_selected_action": [queue.pk], "confirm": "yes", "reason": "CHG-1"}
    root.post(QUEUES, {"action": "pause_queues", **selected})
    assert Queue.objects.get(pk=queue.pk).paused
    assert pull(api, full, queue="jobs:q") == []
    root.post(QUEUES, {"action": "resume_queues", **selected})
    assert not Queue.objects.get(pk=queue.pk).paused
    assert len(pull(api, full, queue="jobs:q")) == 1
    events = [(e.action, e.actor, e.queue) for e in AuditEvent.objects.order_by("id")]
    assert ("pause", "user:root", "jobs:q") in events
    assert ("resume", "user:root", "jobs:q") in events


def test_pause_resume_and_legal_holds_ask_for_a_reason_that_is_audited(
    api: Api, root: Client, full: str
) -> None:
    push(api, full, queue="jobs:q")
    queue = Queue.objects.get(name="jobs:q")
    steps = [
        ("pause_queues", "paused", True),
        ("resume_queues", "paused", False),
        ("place_legal_hold", "legal_hold", True),
        ("release_legal_hold", "legal_hold", False),
    ]
    for action, flag, wanted in steps:
        form = {"action": action, "_selected_action": [queue.pk]}
        ask = root.post(QUEUES, form)
        assert ask.status_code == 200, action
        assert "The reason goes into the audit trail" in ask.content.decode()
        blank = root.post(QUEUES, {**form, "confirm": "yes", "reason": " "})
        assert blank.status_code == 200 and "This field is required" in blank.content.decode()
        assert getattr(Queue.objects.get(pk=queue.pk), flag) is not wanted, action
        done = root.post(QUEUES, {**form, "confirm": "yes", "reason": f"CHG {action}"})
        assert done.status_code == 302
        assert getattr(Queue.objects.get(pk=queue.pk), flag) is wanted, action
    events = AuditEvent.objects.filter(action__in=["pause", "resume", "queue.legalHold"])
    assert [(e.action, e.actor, e.queue, e.details["reason"]) for e in events.order_by("id")] == [
        ("pause", "user:root", "jobs:q", "CHG pause_queues"),
        ("resume", "user:root", "jobs:q", "CHG resume_queues"),
        ("queue.legalHold", "user:root", "jobs:q", "CHG place_legal_hold"),
        ("queue.legalHold", "user:root", "jobs:q", "CHG release_legal_hold"),
    ]


def test_a_queue_form_cannot_pause_and_its_settings_save_through_the_service(
    api: Api, root: Client, full: str
) -> None:
    push(api, full, queue="jobs:q")
    queue = Queue.objects.get(name="jobs:q")
    form = {"subject_path": "user.id", "paused": "on", "name": "renamed", "_save": "Save"}
    assert root.post(f"{QUEUES}{queue.pk}/change/", form).status_code == 302
    queue.refresh_from_db()
    assert (queue.name, queue.paused, queue.subject_path) == ("jobs:q", False, "user.id")
    [event] = _events("queue.update")
    assert event.actor == "user:root"
    assert event.details == {"subject_path": {"from": "userId", "to": "user.id"}}
    assert not LogEntry.objects.exists()


def test_a_queue_added_in_the_admin_is_created_by_the_service(root: Client) -> None:
    form = {"name": "billing", "subject_path": "customerId", "_save": "Save"}
    assert root.post(f"{QUEUES}add/", form).status_code == 302
    assert Queue.objects.get(name="billing").subject_path == "customerId"
    [event] = _events("queue.create")
    assert (event.actor, event.queue) == ("user:root", "billing")
    bad = root.post(f"{QUEUES}add/", {"name": "-bad", "subject_path": "x", "_save": "Save"})
    assert bad.status_code == 200 and not Queue.objects.filter(name="-bad").exists()


def test_queue_limits_are_set_in_the_admin_through_the_services(
    api: Api, root: Client, full: str
) -> None:
    push(api, full, queue="jobs:q")
    queue = Queue.objects.get(name="jobs:q")
    form = {
        "subject_path": "userId",
        "sensitive_fields": "[]",
        "pii_fields": "[]",
        "rate_limit_max": "10",
        "rate_limit_duration_ms": "1000",
        "concurrency_max": "3",
        "group_concurrency": "4",
        "_save": "Save",
    }
    assert root.post(f"{QUEUES}{queue.pk}/change/", form).status_code == 302
    queue.refresh_from_db()
    assert (queue.rate_limit_max, queue.rate_limit_duration_ms, queue.concurrency_max) == (
        10,
        1000,
        3,
    )
    assert queue.group_concurrency == 4
    assert {e.action for e in AuditEvent.objects.filter(actor="user:root")} >= {
        "setRateLimit",
        "setConcurrency",
        "setGroupConcurrency",
    }
    half = {**form, "rate_limit_duration_ms": ""}
    assert root.post(f"{QUEUES}{queue.pk}/change/", half).status_code == 200  # both or none
    queue.refresh_from_db()
    assert queue.rate_limit_duration_ms == 1000


def test_the_admin_has_no_view_site_link(root: Client) -> None:
    """It led to / (nothing there): flashQ's only site is its API and this admin."""
    for page in ("/admin/", "/admin/queues/job/"):
        answer = root.get(page)
        assert answer.status_code == 200 and "View site" not in answer.content.decode()
