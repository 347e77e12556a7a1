"""The identity and network side of the access matrix: every route against tokens that
must not get through (malformed, bad checksum, unknown, expired, revoked, rotated past
its overlap, outside its address list, behind a spoofed forwarded header), a token
whose deny rule covers the queue, and another family presenting a lease. Each answer
leaves exactly one audit event saying what happened."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from compliance.models import AuditEvent
from security import tokens
from security.models import ApiToken

from .support import Api, make_token, push
from .test_permissions import ROUTES

pytestmark = pytest.mark.django_db

FULL = "*=*,admin"
LEASE_ROUTES = {"ack", "ack batch", "fail", "progress", "release", "snooze"}
QUEUE_ROUTES = {
    "push",
    "push batch",
    "pull",
    "getJobs",
    "subscribeEvents",
    "stats",
    "pause",
    "resume",
    "setRateLimit",
    "removeRateLimit",
    "setSchema",
    "removeSchema",
    "setConcurrency",
    "setGroupConcurrency",
    "removeGroupConcurrency",
    "removeConcurrency",
    "retryFailed",
    "putSchedule",
    "getSchedule",
    "listSchedules",
    "pauseSchedule",
    "resumeSchedule",
    "triggerSchedule",
    "deleteSchedule",
    "pushFlow",
    "putWebhook",
    "getWebhook",
    "listWebhooks",
    "rotateWebhookSecret",
    "deleteWebhook",
}
UNSCOPED_ROUTES = {"listQueues", "me"}


def _created(name: str, *args: str) -> str:
    out = StringIO()
    call_command("create_token", name, "--allow", FULL, *args, stdout=out)
    return out.getvalue().strip().splitlines()[-1]


def _expired(name: str) -> str:
    raw = _created(name)
    ApiToken.objects.filter(name=name).update(expires_at=timezone.now() - timedelta(seconds=1))
    return raw


def _revoked(name: str) -> str:
    raw = _created(name)
    call_command("revoke_token", name)
    return raw


def _rotated_past_overlap(name: str) -> str:
    raw = _created(name)
    call_command("rotate_token", name, "--overlap", "0", stdout=StringIO())
    return raw


def _bad_checksum(name: str) -> str:
    raw = _created(name)
    return raw[:-1] + ("0" if raw[-1] != "0" else "1")


def _spent(name: str) -> str:
    raw = _created(name, "--rate", "1/1h")
    Api().get("/me", as_=raw)  # its one request this hour
    return raw


# persona: (make the token, client address meta, expected status or None for "by route",
#           the refusal's auth reason if a 401)
PERSONAS: dict[str, tuple[Callable[[str], str], dict[str, str], int | None, str | None]] = {
    "malformed": (lambda _: "fq_not-a-token", {}, 401, "malformed"),
    "bad checksum": (_bad_checksum, {}, 401, "malformed"),
    "unknown": (lambda _: tokens.generate()[0], {}, 401, "unknown"),
    "expired": (_expired, {}, 401, "expired"),
    "revoked": (_revoked, {}, 401, "revoked"),
    "rotated after overlap": (_rotated_past_overlap, {}, 401, "expired"),
    "wrong cidr": (
        lambda name: _created(name, "--cidr", "10.0.0.0/8"),
        {"REMOTE_ADDR": "198.51.100.7"},
        403,
        None,
    ),
    "spoofed forwarded header": (
        lambda name: _created(name, "--cidr", "10.0.0.0/8"),
        {"REMOTE_ADDR": "198.51.100.7", "HTTP_X_FORWARDED_FOR": "10.1.1.1"},
        403,
        None,
    ),
    "over its rate limit": (_spent, {}, 429, None),
    "denied by a deny rule": (
        lambda name: make_token(name, FULL, deny=("jobs:q=*",)),
        {},
        None,
        None,
    ),
    "another family with the lease id": (_created, {}, None, None),
    # Every verb but push on jobs:q: schedule alone must not make jobs there.
    "push denied by a deny rule": (
        lambda name: make_token(name, FULL, deny=("jobs:q=push",)),
        {},
        None,
        None,
    ),
}
#: The routes that make jobs: push itself, a flow, and a schedule's PUT and trigger.
PUSHING_ROUTES = {"push", "push batch", "putSchedule", "triggerSchedule", "pushFlow"}


def _expected(persona: str, route: str) -> int:
    fixed = PERSONAS[persona][2]
    if fixed is not None:
        return fixed
    if route in UNSCOPED_ROUTES:
        return 200
    if persona == "denied by a deny rule":
        # The deny covers every verb on jobs:q, so it cannot even see the job there.
        return 403 if route in QUEUE_ROUTES else 404
    if persona == "push denied by a deny rule" and route in PUSHING_ROUTES:
        return 403
    # Another family (or one denied push only): everything but a lease is theirs to
    # use; the lease is not.
    if route in LEASE_ROUTES:
        return 409
    answers = {
        "retry": 409,
        "triggerSchedule": 201,
        "deleteSchedule": 204,
        "deleteWebhook": 204,
    }
    return answers.get(route, 201 if route in ("push", "push batch", "pushFlow") else 200)


CASES = [(route, persona) for route in ROUTES for persona in PERSONAS]


@pytest.mark.parametrize(("route", "persona"), CASES)
def test_access_matrix(api: Api, route: str, persona: str) -> None:
    make, meta, _, reason = PERSONAS[persona]
    setup = make_token("setup", FULL)
    job = push(api, setup, queue="jobs:q")
    job["_setup"] = setup
    token = make(f"p-{len(persona)}")
    api.client.defaults.update(meta)
    call = ROUTES[route][0](api, job, token)
    expected = _expected(persona, route)
    assert call.status == expected, (call.status, call.body)
    [event] = AuditEvent.objects.filter(request_id=call.headers["X-Request-ID"]).exclude(
        actor__startswith="system:"
    )
    assert event.status == expected
    if reason is not None:
        assert (event.actor, event.details.get("auth")) == ("anonymous", reason)
    if expected == 403 and meta:
        assert event.details.get("network") and event.client_ip == "198.51.100.7"
    assert token.rpartition("_")[2] not in str(event.details)
