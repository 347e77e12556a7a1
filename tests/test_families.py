"""Token families: rotation with overlap, revoking a whole family, and what a family
owns (leases and idempotency keys) that no other token can touch or learn about."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from compliance.models import AuditEvent
from queues.models import Job, JobState
from security.models import ApiToken

from .support import Api, clear_audit, make_token, pull, push

pytestmark = pytest.mark.django_db

RULES = ("--allow", "jobs:*=push,pull,ack,fail,progress,getJob", "--cidr", "127.0.0.0/8")


def _last_line(command: str, *args: str) -> str:
    out = StringIO()
    call_command(command, *args, stdout=out)
    return out.getvalue().strip().splitlines()[-1]


def _rotate(name: str, overlap: str) -> str:
    return _last_line("rotate_token", name, "--overlap", overlap)


def test_rotation_issues_a_twin_and_the_old_token_stops_after_the_overlap(api: Api) -> None:
    old_raw = _last_line("create_token", "svc", *RULES)
    old = ApiToken.objects.get(name="svc")
    new_raw = _rotate("svc", "2")
    new = ApiToken.objects.get(name="svc")
    old.refresh_from_db()
    assert new.pk != old.pk and new.family == old.family == old.public_id
    assert old.name == f"svc~{old.public_id}"
    assert old.expires_at is not None
    assert timedelta(hours=1.9) < old.expires_at - timezone.now() <= timedelta(hours=2)
    assert list(new.permissions.values_list("pattern", "verbs")) == [
        ("jobs:*", "push,pull,ack,fail,progress,getJob")
    ]
    assert new.allowed_cidrs == ["127.0.0.0/8"]
    for raw in (old_raw, new_raw):  # both work during the overlap
        assert api.post("/queues/jobs:a/jobs", {"data": {}}, as_=raw).status == 201
    ApiToken.objects.filter(pk=old.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    clear_audit()
    assert api.post("/queues/jobs:a/jobs", {"data": {}}, as_=old_raw).status == 401
    refused = AuditEvent.objects.get()
    assert refused.details["auth"] == "expired"
    assert refused.details["public_id"] == old.public_id
    assert api.post("/queues/jobs:a/jobs", {"data": {}}, as_=new_raw).status == 201
    clear_audit()
    _rotate("svc", "0")
    event = AuditEvent.objects.get(action="token.rotate")
    assert (event.actor, event.details["family"]) == ("command:rotate_token", old.family)


def test_rotation_never_extends_the_old_token_and_refuses_bad_input() -> None:
    _last_line("create_token", "svc", *RULES, "--expires-in", "1")
    before = ApiToken.objects.get(name="svc").expires_at
    _rotate("svc", "100")
    old = ApiToken.objects.exclude(name="svc").get()
    assert old.expires_at == before
    for args in (["nobody", "--overlap", "1"], ["svc", "--overlap", "-1"]):
        with pytest.raises(CommandError):
            call_command("rotate_token", *args)
    call_command("revoke_token", "svc")
    with pytest.raises(CommandError, match="revoked"):
        call_command("rotate_token", "svc", "--overlap", "1")


def test_revoking_a_token_stops_its_whole_family_at_once_with_the_reason(api: Api) -> None:
    first = _last_line("create_token", "svc", *RULES)
    second = _rotate("svc", "24")
    third = _rotate("svc", "24")
    bystander = make_token("other", "jobs:*=push")
    clear_audit()
    done = call_command("revoke_token", "svc", "--reason", "INC-7 leaked in a log")
    assert "3 token(s)" in done
    for raw in (first, second, third):
        assert api.post("/queues/jobs:a/jobs", {"data": {}}, as_=raw).status == 401
    assert api.post("/queues/jobs:a/jobs", {"data": {}}, as_=bystander).status == 201
    events = AuditEvent.objects.filter(action="token.revoke").order_by("id")
    family = set(ApiToken.objects.exclude(name="other").values_list("pk", flat=True))
    assert {event.details["token_id"] for event in events} == family
    assert {event.details["reason"] for event in events} == {"INC-7 leaked in a log"}
    assert {event.actor for event in events} == {"command:revoke_token"}


def test_only_this_revokes_one_token_and_leaves_its_twin_working(api: Api) -> None:
    _last_line("create_token", "svc", *RULES)
    successor = _rotate("svc", "24")
    old = ApiToken.objects.exclude(name="svc").get()
    call_command("revoke_token", old.name, "--only-this", "--reason", "old host retired")
    assert ApiToken.objects.get(pk=old.pk).revoked
    assert api.post("/queues/jobs:a/jobs", {"data": {}}, as_=successor).status == 201


def test_rotation_keeps_the_lifetime_the_token_was_issued_with() -> None:
    _last_line("create_token", "svc", *RULES, "--expires-in", "30")
    _rotate("svc", "1")
    new = ApiToken.objects.get(name="svc")
    assert new.expires_at is not None
    lifetime = new.expires_at - timezone.now()
    assert timedelta(days=29, hours=23) < lifetime <= timedelta(days=30)
    event = AuditEvent.objects.get(action="token.rotate")
    assert event.details["expires_at"] == new.expires_at.isoformat()
    _rotate("svc", "1")  # and again: still 30 days, not the 90-day default
    newer = ApiToken.objects.get(name="svc")
    assert newer.expires_at is not None
    assert timedelta(days=29, hours=23) < newer.expires_at - timezone.now() <= timedelta(days=30)


@pytest.mark.parametrize("verb", ["ack", "fail", "progress"])
def test_a_lease_presented_by_another_family_is_409_even_with_the_right_id(
    api: Api, verb: str
) -> None:
    owner = _last_line("create_token", "svc", *RULES)
    other = make_token("other", "jobs:*=pull,ack,fail,progress")
    push(api, owner, queue="jobs:q")
    [job] = pull(api, owner, queue="jobs:q")
    body = {"lease_id": job["lease_id"], "progress": 5}
    if verb != "progress":
        body.pop("progress")
    call = api.post(f"/jobs/{job['id']}/{verb}", body, as_=other)
    assert call.status == 409 and call.body["code"] == "lease_conflict"
    stored = Job.objects.get(id=job["id"])
    assert (stored.state, stored.progress, stored.errors) == (JobState.ACTIVE, 0, [])
    batch = {"jobs": [{"id": job["id"], "lease_id": job["lease_id"]}]}
    assert api.post("/jobs/ack", batch, as_=other).status == 409
    # A token rotated from the one that pulled carries on with the lease.
    successor = _rotate("svc", "1")
    assert api.post(f"/jobs/{job['id']}/{verb}", body, as_=successor).status == 200


def test_an_idempotency_key_is_not_a_side_channel_between_families(api: Api) -> None:
    owner = _last_line("create_token", "svc", *RULES)
    other = make_token("other", "jobs:*=push")
    pushed = push(api, owner, queue="jobs:q", key="invoice-42", data={"secret": "s3"})
    call = api.post("/queues/jobs:q/jobs", {"data": {}, "key": "invoice-42"}, as_=other)
    assert call.status == 409 and call.body["code"] == "key_conflict"
    assert pushed["id"] not in str(call.body) and "s3" not in str(call.body)
    batch = {"jobs": [{"data": {}}, {"data": {}, "key": "invoice-42"}]}
    assert api.post("/queues/jobs:q/jobs/batch", batch, as_=other).status == 409
    assert Job.objects.count() == 1  # all or nothing
    again = api.post("/queues/jobs:q/jobs", {"data": {}, "key": "invoice-42"}, as_=owner)
    assert (again.status, again.body["id"]) == (200, pushed["id"])
    successor = _rotate("svc", "1")
    same = api.post("/queues/jobs:q/jobs", {"data": {}, "key": "invoice-42"}, as_=successor)
    assert (same.status, same.body["id"]) == (200, pushed["id"])


def test_a_rotated_twin_shares_its_predecessor_s_rate_budget(api: Api) -> None:
    old = _last_line("create_token", "svc", *RULES, "--rate", "2/1h")
    assert api.get("/me", as_=old).status == 200
    new = _rotate("svc", "1")
    assert api.get("/me", as_=new).status == 200
    assert api.get("/me", as_=new).status == 429
    assert api.get("/me", as_=old).status == 429


def test_an_expired_token_cannot_be_rotated_by_the_command_or_the_admin(api: Api) -> None:
    """Reported: rotating an expired token issued a fresh, valid one."""
    from .personas import superuser_client

    raw = _last_line("create_token", "svc", *RULES)
    ApiToken.objects.filter(name="svc").update(expires_at=timezone.now() - timedelta(seconds=1))
    assert api.post("/queues/jobs:a/jobs", {"data": {}}, as_=raw).status == 401
    clear_audit()
    with pytest.raises(CommandError, match="An expired token cannot be rotated"):
        call_command("rotate_token", "svc", "--overlap", "24", stdout=StringIO())
    token = ApiToken.objects.get()
    page = superuser_client().post(
        "/admin/security/apitoken/",
        {"action": "rotate_tokens", "_selected_action": [token.pk]},
        follow=True,
    )
    shown = page.content.decode()
    assert "Rotate: 0 of 1 token(s); refused:" in shown
    assert "Svc: An expired token cannot be rotated" in shown  # capitalised by the admin
    assert "fq_" not in shown
    assert list(ApiToken.objects.values_list("pk", "name")) == [(token.pk, "svc")]
    assert not AuditEvent.objects.filter(action="token.rotate").exists()
    # Past the maximum lifetime is expired too, whatever expires_at says.
    ApiToken.objects.filter(pk=token.pk).update(
        expires_at=None, created_at=timezone.now() - timedelta(days=400)
    )
    with pytest.raises(CommandError, match="expired"):
        call_command("rotate_token", "svc", "--overlap", "24", stdout=StringIO())
    assert ApiToken.objects.count() == 1
