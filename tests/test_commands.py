from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from compliance.models import AuditEvent
from security.models import ApiToken, QueuePermission

from .support import Api

pytestmark = pytest.mark.django_db


def _create(*args: str) -> str:
    out = StringIO()
    call_command("create_token", *args, stdout=out)
    return out.getvalue().strip().splitlines()[-1]


def test_create_token_prints_a_working_token_alone_on_the_last_line(api: Api) -> None:
    raw = _create(
        "svc", "--allow", "jobs:*=push,getJob", "--deny", "jobs:secret=*", "--expires-in", "30"
    )
    assert raw.startswith("fq_") and " " not in raw
    token = ApiToken.objects.get(name="svc")
    assert token.expires_at is not None
    rules = {(p.pattern, p.verbs, p.effect) for p in QueuePermission.objects.filter(token=token)}
    assert rules == {("jobs:*", "push,getJob", "allow"), ("jobs:secret", "*", "deny")}
    assert api.post("/queues/jobs:a/jobs", {"data": {}}, as_=raw).status == 201
    assert api.post("/queues/jobs:secret/jobs", {"data": {}}, as_=raw).status == 403
    assert raw not in str(list(AuditEvent.objects.values()))


@pytest.mark.parametrize(
    "args",
    [
        ["x", "--allow", "jobs:*=fly"],
        ["x", "--allow", "bad/pattern=push"],
        ["x", "--allow", "jobs:*="],
        ["x", "--allow", "q=push", "--expires-in", "0"],
    ],
)
def test_create_token_refuses_bad_rules(args: list[str]) -> None:
    with pytest.raises(CommandError):
        _create(*args)
    assert not ApiToken.objects.exists()


def test_create_token_refuses_a_duplicate_name() -> None:
    _create("svc", "--allow", "q=push")
    with pytest.raises(CommandError):
        _create("svc", "--allow", "q=push")


def test_revoke_token_stops_it_at_once(api: Api) -> None:
    raw = _create("svc", "--allow", "q=push")
    assert api.post("/queues/q/jobs", {"data": {}}, as_=raw).status == 201
    assert "Revoked" in call_command("revoke_token", "svc")
    assert api.post("/queues/q/jobs", {"data": {}}, as_=raw).status == 401
    assert AuditEvent.objects.filter(action="token.revoke").count() == 1


def test_revoke_an_unknown_token_is_an_error() -> None:
    with pytest.raises(CommandError):
        call_command("revoke_token", "nobody")


@pytest.mark.parametrize(
    ("verb", "queue", "expected"),
    [
        ("push", "jobs:a", "allowed: by rule: allow jobs:* (push)"),
        ("push", "jobs:secret", "denied: by rule: deny jobs:secret (push)"),
        ("pull", "jobs:a", "denied: no rule: default deny"),
        ("admin", "jobs:a", "denied: no rule: default deny"),
    ],
)
def test_check_access_says_what_decided(api: Api, verb: str, queue: str, expected: str) -> None:
    raw = _create("svc", "--allow", "jobs:*=push,getJob", "--deny", "jobs:secret=*")
    assert call_command("check_access", "svc", verb, queue) == expected
    # The same decision as the API's.
    if verb == "push":
        status = api.post(f"/queues/{queue}/jobs", {"data": {}}, as_=raw).status
        assert (status == 201) == expected.startswith("allowed")


def test_check_access_refuses_unknown_verbs_tokens_and_queue_names() -> None:
    _create("svc", "--allow", "jobs:*=push")
    for args in (["svc", "psh", "jobs:a"], ["nobody", "push", "jobs:a"], ["svc", "push", "-x"]):
        with pytest.raises(CommandError):
            call_command("check_access", *args)
    call_command("revoke_token", "svc")
    assert "but the token is revoked" in call_command("check_access", "svc", "push", "jobs:a")
