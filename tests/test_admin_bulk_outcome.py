"""A bulk action reports success only when it did every selected row: when it did
none, an error; some, a warning with how many of how many; then each refusal. One
helper (compliance.audit.staff.report_outcome) says it for jobs, queues, schedules,
webhooks and tokens alike."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.test import Client

from queues import services
from queues.models import Queue, Schedule, Webhook
from queues.schedulespec import parse_schedule_spec
from security.models import ApiToken
from security.services import token_create, token_revoke

from .personas import logged_in, make_operator, superuser_client
from .support import SETUP

pytestmark = pytest.mark.django_db


def _said(response: Any) -> list[tuple[str, str]]:
    return [(message.level_tag, str(message)) for message in get_messages(response.wsgi_request)]


def _act(client: Client, url: str, action: str, pks: list[Any]) -> Any:
    body = {"action": action, "_selected_action": [str(pk) for pk in pks]}
    # Followed, so the list page shows (and so uses up) the messages.
    return client.post(url, {**body, "confirm": "yes", "reason": "INC-9"}, follow=True)


def _operator_of_mail_viewer_of_billing() -> Client:
    olga = make_operator("olga", "mail")
    Queue.objects.get_or_create(name="billing")
    services.queue_grant(queue_name="billing", role="viewer", grantee=olga, actor=SETUP)
    return logged_in(get_user_model().objects.get(pk=olga.pk))


def _schedule(queue: str, name: str) -> Schedule:
    owner = ApiToken.objects.filter(name="owner").first()
    if owner is None:
        owner, _ = token_create(name="owner", rules=[], actor=SETUP)
    spec = parse_schedule_spec({"every_ms": 3_600_000, "data": {"n": 1}})
    schedule, _ = services.schedule_save(
        queue_name=queue, name=name, spec=spec, owner=f"family:{owner.family}", actor=SETUP
    )
    return schedule


def test_schedules_say_none_and_some() -> None:
    op = _operator_of_mail_viewer_of_billing()
    mine, theirs = _schedule("mail", "nightly"), _schedule("billing", "invoices")
    url = "/admin/queues/schedule/"
    none = _said(_act(op, url, "pause_schedules", [theirs.pk]))
    assert none[0] == ("error", "Pause: 0 of 1 schedule(s); refused:")
    assert none[1] == ("warning", "billing/invoices: you may not pause schedules of this queue")
    some = _said(_act(op, url, "pause_schedules", [mine.pk, theirs.pk]))
    assert some[0] == ("warning", "Pause: 1 of 2 schedule(s); refused:")
    assert Schedule.objects.get(pk=mine.pk).paused and not Schedule.objects.get(pk=theirs.pk).paused
    all_done = _said(_act(op, url, "resume_schedules", [mine.pk]))
    assert all_done == [("success", "Resume: 1 schedule(s).")]


def test_a_service_refusal_counts_too() -> None:
    """A trigger whose owner has no live token left is refused by the service."""
    schedule = _schedule("mail", "nightly")
    token_revoke(name="owner", actor=SETUP)
    said = _said(
        _act(superuser_client(), "/admin/queues/schedule/", "trigger_schedules", [schedule.pk])
    )
    assert said[0] == ("error", "Trigger: 0 of 1 schedule(s); refused:")
    assert said[1][1].startswith("mail/nightly: ")


def _webhook(queue: str, name: str) -> Webhook:
    webhook, _ = services.webhook_save(
        queue_name=queue,
        name=name,
        url="https://hooks.example.com/x",
        events=["failed"],
        actor=SETUP,
    )
    return webhook


def test_webhooks_say_none_and_some() -> None:
    op = _operator_of_mail_viewer_of_billing()
    mine, theirs = _webhook("mail", "h"), _webhook("billing", "h")
    url = "/admin/queues/webhook/"
    none = _said(_act(op, url, "delete_webhooks", [theirs.pk]))
    assert none[0] == ("error", "Delete: 0 of 1 webhook(s); refused:")
    some = _said(_act(op, url, "delete_webhooks", [mine.pk, theirs.pk]))
    assert some[0] == ("warning", "Delete: 1 of 2 webhook(s); refused:")
    assert list(Webhook.objects.values_list("queue__name", flat=True)) == ["billing"]


def test_queues_say_none_and_some() -> None:
    op = _operator_of_mail_viewer_of_billing()
    mail, billing = Queue.objects.get(name="mail"), Queue.objects.get(name="billing")
    url = "/admin/queues/queue/"
    none = _said(_act(op, url, "pause_queues", [billing.pk]))
    assert none[0] == ("error", "Pause: 0 of 1 queue(s); refused:")
    assert none[1] == ("warning", "billing: you may not change this queue")
    some = _said(_act(op, url, "pause_queues", [mail.pk, billing.pk]))
    assert some[0] == ("warning", "Pause: 1 of 2 queue(s); refused:")
    assert Queue.objects.get(pk=mail.pk).paused and not Queue.objects.get(pk=billing.pk).paused
    assert _said(_act(op, url, "resume_queues", [mail.pk])) == [("success", "Resume: 1 queue(s).")]


def test_rotating_a_revoked_token_is_not_a_success() -> None:
    live, _ = token_create(name="live", rules=[], actor=SETUP)
    dead, _ = token_create(name="dead", rules=[], actor=SETUP)
    token_revoke(name="dead", actor=SETUP)
    root = superuser_client()
    url = "/admin/security/apitoken/"
    none = root.post(url, {"action": "rotate_tokens", "_selected_action": [dead.pk]}, follow=True)
    assert _said(none)[0] == ("error", "Rotate: 0 of 1 token(s); refused:")
    assert _said(none)[1] == ("warning", "dead: a revoked token cannot be rotated")
    some = root.post(url, {"action": "rotate_tokens", "_selected_action": [live.pk, dead.pk]})
    assert some.status_code == 200 and "fq_" in some.content.decode()  # the new secret, once
    assert _said(some)[0] == ("warning", "Rotate: 1 of 2 token(s); refused:")


def test_deleting_retention_policies_reports_what_it_did() -> None:
    from compliance import retention
    from compliance.models import RetentionPolicy

    policy = retention.retention_policy_save(
        policy=RetentionPolicy(queue_pattern="mail*", target="completed", max_age_days=7),
        actor=SETUP,
    )
    said = _said(
        _act(
            superuser_client(), "/admin/compliance/retentionpolicy/", "delete_policies", [policy.pk]
        )
    )
    assert said == [("success", "Delete: 1 retention policy(s).")]
    assert not RetentionPolicy.objects.filter(pk=policy.pk).exists()
