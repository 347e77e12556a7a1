"""Webhook deliveries end to end: job events become delivery jobs of the internal queue
(each queued once, with the dispatcher's cursor in the same transaction), which are
POSTed, signed, to a real HTTPS receiver on loopback reached through the allow-list.
A receiver that keeps failing gets retries, then its webhook is disabled (audit event,
metric, pending deliveries dropped). No token, whatever its rules, reaches the
internal queue."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone
from flashq_client import SignatureError, verify_signature
from prometheus_client import REGISTRY

from compliance.audit import Actor
from compliance.models import AuditEvent
from kernel.limits import WEBHOOK_QUEUE
from queues.models import Job, JobEvent, JobState, Webhook, WebhookCursor
from queues.services import webhook_delivered, webhook_save, webhooks_reseal
from queues.webhooks import deliver as deliver_module
from queues.webhooks.deliver import deliver
from queues.webhooks.dispatch import dispatch
from security.access import pattern_matches
from security.encryption import generate_key

from .support import Api, make_token, pull, push
from .webhookreceiver import Receiver, serve

pytestmark = pytest.mark.django_db(transaction=True)

DEADLINE_SECONDS = 30
SENDER = Actor.system("webhooks")


@pytest.fixture(autouse=True)
def _empty_log() -> None:
    """On SQLite the flush between transactional tests logs ``removed`` events."""
    JobEvent.objects.all().delete()


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    for served in serve(tmp_path):
        with override_settings(
            WEBHOOK_ALLOWED_HOSTS=["127.0.0.1/32"], WEBHOOK_CA_BUNDLE=str(served.ca_file)
        ):
            yield served


@pytest.fixture
def token() -> str:
    return make_token("hooks", "jobs:*=*,admin")


def _hook(api: Api, token: str, receiver: Receiver, events: list[str]) -> str:
    call = api.request(
        "PUT", "/queues/jobs:q/webhooks/h", {"url": receiver.url(), "events": events}, as_=token
    )
    assert call.status == 201, call.body
    return str(call.body["secret"])


def _run_until(done: Callable[[], bool]) -> None:
    """Passes of ``run_webhooks --once`` until ``done`` (PostgreSQL holds events back
    while any older transaction in the cluster is still open, so allow some time)."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not done():
        assert time.monotonic() < deadline, "timed out"
        call_command("run_webhooks", "--once", stdout=StringIO())
        time.sleep(0.05)


def test_push_and_ack_events_arrive_signed(api: Api, token: str, receiver: Receiver) -> None:
    secret = _hook(api, token, receiver, ["pushed", "completed"])
    Webhook.objects.update(consecutive_failures=2)
    job = push(api, token, data={"card": "secret payload"})
    [held] = pull(api, token)
    acked = api.post(f"/jobs/{job['id']}/ack", {"lease_id": held["lease_id"]}, as_=token)
    assert acked.status == 200
    _run_until(lambda: len(receiver.requests) >= 2)
    time.sleep(0.2)
    call_command("run_webhooks", "--once", stdout=StringIO())
    assert len(receiver.requests) == 2  # queued once each: no duplicates
    bodies = []
    for request in receiver.requests:
        assert request.headers["Content-Type"] == "application/json"
        verify_signature(secret, request.headers["X-Flashq-Signature"], request.body)
        body = json.loads(request.body)
        assert request.headers["X-Flashq-Event-Id"] == body["id"]
        bodies.append(body)
    assert [b["kind"] for b in bodies] == ["pushed", "completed"]
    assert {b["job_id"] for b in bodies} == {job["id"]}
    assert set(bodies[1]) == {
        "id",
        "kind",
        "job_id",
        "queue",
        "state",
        "attempts",
        "progress",
        "error_code",
        "at",
        "webhook",
    }
    assert (bodies[1]["queue"], bodies[1]["state"], bodies[1]["webhook"]) == (
        "jobs:q",
        "completed",
        "h",
    )
    assert b"secret payload" not in b"".join(r.body for r in receiver.requests)
    # A tampered body does not verify.
    with pytest.raises(ValueError):
        verify_signature(
            secret, receiver.requests[0].headers["X-Flashq-Signature"], b'{"kind":"x"}'
        )
    deliveries = Job.objects.filter(queue__name=WEBHOOK_QUEUE)
    assert sorted(deliveries.values_list("state", flat=True)) == ["completed", "completed"]
    webhook = Webhook.objects.get()
    assert (webhook.last_status, webhook.consecutive_failures) == (200, 0)  # reset
    assert WebhookCursor.objects.get().event_id > 0


def _disabled_count() -> float:
    return REGISTRY.get_sample_value("flashq_webhooks_disabled_total", {"queue": "jobs:q"}) or 0


@override_settings(
    WEBHOOK_MAX_FAILURES=3, WEBHOOK_DISABLE_AFTER_SECONDS=0, WEBHOOK_RETRY_DELAY_MS=1
)
def test_a_failing_receiver_gets_retries_then_its_webhook_is_disabled(
    api: Api, token: str, receiver: Receiver
) -> None:
    receiver.status = 500
    secret = _hook(api, token, receiver, ["pushed"])
    before = _disabled_count()
    push(api, token)
    push(api, token)
    _run_until(lambda: not Webhook.objects.get().enabled)
    assert len(receiver.requests) == 3
    webhook = Webhook.objects.get()
    assert webhook.disabled_at is not None and webhook.last_status == 500
    [event] = AuditEvent.objects.filter(action="webhook.disable")
    assert (event.actor, event.queue, event.details["failures"]) == (
        "system:webhooks",
        "jobs:q",
        3,
    )
    assert secret not in json.dumps(event.details)
    assert _disabled_count() == before + 1
    # Its deliveries are settled or dropped: nothing waits to be sent.
    assert not Job.objects.filter(queue__name=WEBHOOK_QUEUE, state=JobState.WAITING).exists()
    call_command("run_webhooks", "--once", stdout=StringIO())
    assert len(receiver.requests) == 3
    # A PUT enables it again.
    again = api.request(
        "PUT", "/queues/jobs:q/webhooks/h", {"url": receiver.url(), "events": ["pushed"]}, as_=token
    )
    assert again.status == 200 and again.body["enabled"] is True


def _clean(api: Api, token: str, pattern: str) -> Any:
    return api.post(f"/queues/{pattern}/clean", {"grace_ms": 0, "state": "completed"}, as_=token)


def test_the_internal_queue_is_out_of_every_tokens_reach(
    api: Api, receiver: Receiver, token: str
) -> None:
    full = make_token("everything", "*=*,admin,reveal")
    _hook(api, token, receiver, ["pushed"])
    push(api, token)
    _run_until(lambda: Job.objects.filter(queue__name=WEBHOOK_QUEUE).exists())
    _run_until(lambda: len(receiver.requests) >= 1)
    delivery = Job.objects.get(queue__name=WEBHOOK_QUEUE)
    assert not pattern_matches("*", WEBHOOK_QUEUE)
    assert not pattern_matches("_flashq.*", WEBHOOK_QUEUE)
    assert not pattern_matches(WEBHOOK_QUEUE, WEBHOOK_QUEUE)
    assert api.post(f"/queues/{WEBHOOK_QUEUE}/pull", {}, as_=full).status == 400
    assert api.post(f"/queues/{WEBHOOK_QUEUE}/jobs", {"data": {}}, as_=full).status == 400
    assert api.get(f"/jobs/{delivery.id}", as_=full).status == 404
    assert api.post(f"/jobs/{delivery.id}/retry", as_=full).status == 404
    assert WEBHOOK_QUEUE not in json.dumps(api.get("/queues", as_=full).body)
    assert _clean(api, full, "*").status == 200
    assert _clean(api, full, "_flashq.*").status in (200, 404)
    assert Job.objects.filter(id=delivery.id).exists()


def test_an_idle_sender_adds_nothing_to_the_audit_trail(
    api: Api, token: str, receiver: Receiver
) -> None:
    """Nothing due: no pull is made, so no pull event every half second."""
    _hook(api, token, receiver, ["failed"])
    push(api, token)  # an event no webhook wants
    before = AuditEvent.objects.count()
    for _ in range(3):
        out = StringIO()
        call_command("run_webhooks", "--once", stdout=out)
        assert out.getvalue().strip() == "Queued 0, sent 0, delivered 0."
    assert AuditEvent.objects.count() == before
    assert receiver.requests == []


def _queued(api: Api, token: str, receiver: Receiver, jobs: int) -> None:
    """A webhook for ``pushed``, ``jobs`` jobs pushed and their deliveries queued."""
    _hook(api, token, receiver, ["pushed"])
    for _ in range(jobs):
        push(api, token)
    deadline = time.monotonic() + DEADLINE_SECONDS
    while Job.objects.filter(queue__name=WEBHOOK_QUEUE).count() < jobs:
        assert time.monotonic() < deadline, "timed out"
        dispatch(actor=SENDER)
        time.sleep(0.05)


def test_a_delivery_whose_lease_ran_out_mid_send_does_not_stop_the_sender(
    api: Api, token: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ack meets LeaseConflict: logged, the pass goes on, and the delivery (still
    leased to nobody alive) is sent again by a later pass."""
    _queued(api, token, receiver, 1)
    monkeypatch.setattr(deliver_module, "LEASE_SECONDS", 1)
    receiver.delay = 1.6
    assert deliver(actor=SENDER) == (1, 0)  # sent, but not settled
    [delivery] = Job.objects.filter(queue__name=WEBHOOK_QUEUE)
    assert delivery.state == JobState.ACTIVE
    receiver.delay = 0
    assert deliver(actor=SENDER) == (1, 1)
    assert len(receiver.requests) == 2
    assert Job.objects.get(id=delivery.id).state == JobState.COMPLETED


def test_a_stop_during_a_pass_releases_the_deliveries_not_yet_sent(
    api: Api, token: str, receiver: Receiver
) -> None:
    _queued(api, token, receiver, 3)
    receiver.delay = 1.0
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    started = time.monotonic()
    assert deliver(actor=SENDER, stop=stop) == (1, 1)
    assert time.monotonic() - started < 3
    assert len(receiver.requests) == 1
    left = Job.objects.filter(queue__name=WEBHOOK_QUEUE).exclude(state=JobState.COMPLETED)
    assert sorted(left.values_list("state", "attempts", "lease_id")) == [
        (JobState.WAITING, 0, None),
        (JobState.WAITING, 0, None),
    ]


@override_settings(WEBHOOK_MAX_FAILURES=3, WEBHOOK_DISABLE_AFTER_SECONDS=3600)
def test_a_short_outage_of_a_busy_webhook_does_not_disable_it() -> None:
    """Failures in a row disable a webhook only once they span
    WEBHOOK_DISABLE_AFTER_SECONDS: many deliveries failing within seconds do not."""
    hook, _ = webhook_save(
        queue_name="jobs:q",
        name="h",
        url="https://hooks.example.com/",
        events=["pushed"],
        actor=SENDER,
    )
    for _ in range(10):
        assert webhook_delivered(webhook_id=hook.id, status=503, actor=SENDER) is False
    hook.refresh_from_db()
    assert (hook.enabled, hook.consecutive_failures) == (True, 10)
    assert hook.failing_since is not None
    first = hook.failing_since
    # Failing for an hour: the next failure disables it.
    Webhook.objects.update(failing_since=first - timedelta(seconds=3600))
    assert webhook_delivered(webhook_id=hook.id, status=503, actor=SENDER) is True
    hook.refresh_from_db()
    assert hook.enabled is False
    [event] = AuditEvent.objects.filter(action="webhook.disable")
    assert event.details["failures"] == 11 and event.details["failing_seconds"] >= 3600
    # A PUT enables it again, and a success ends a run of failures.
    webhook_save(
        queue_name="jobs:q",
        name="h",
        url="https://hooks.example.com/",
        events=["pushed"],
        actor=SENDER,
    )
    assert webhook_delivered(webhook_id=hook.id, status=503, actor=SENDER) is False
    assert webhook_delivered(webhook_id=hook.id, status=204, actor=SENDER) is False
    again = Webhook.objects.get(id=hook.id)
    assert (again.enabled, again.consecutive_failures, again.failing_since) == (True, 0, None)


def test_a_refused_address_is_logged_but_not_shown_to_the_queues_admins(
    api: Api, token: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """last_error is read by any admin-verb token of the queue: it says why, not where
    (which would map the inside of the network). Nothing is sent anywhere."""
    call = api.request(
        "PUT",
        "/queues/jobs:q/webhooks/h",
        {"url": "https://hooks.example.com/x", "events": ["pushed"]},
        as_=token,
    )
    assert call.status == 201
    push(api, token)

    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with caplog.at_level(logging.WARNING, logger="flashq.webhooks"):
        _run_until(lambda: Webhook.objects.get().last_error != "")
    webhook = Webhook.objects.get()
    assert webhook.last_error == "hooks.example.com resolves to a private address"
    shown = api.get("/queues/jobs:q/webhooks/h", as_=token)
    assert shown.status == 200 and shown.body["last_error"] == webhook.last_error
    assert "10.1.2.3" not in json.dumps(shown.body)
    assert "10.1.2.3" in caplog.text


def _next_delivery(api: Api, token: str, receiver: Receiver) -> tuple[Any, str]:
    """Push a job; its delivery as received, and its signature header."""
    seen = len(receiver.requests)
    push(api, token)
    _run_until(lambda: len(receiver.requests) > seen)
    request = receiver.requests[seen]
    return request, request.headers["X-Flashq-Signature"]


def test_after_a_rotation_both_secrets_sign_until_the_overlap_ends(
    api: Api, token: str, receiver: Receiver
) -> None:
    old = _hook(api, token, receiver, ["pushed"])
    rotated = api.post("/queues/jobs:q/webhooks/h/rotate-secret", {}, as_=token)
    assert rotated.status == 200
    new = rotated.body["secret"]
    shown = api.get("/queues/jobs:q/webhooks/h", as_=token).body
    assert shown["rotation_overlap_until"] is not None
    assert old not in json.dumps(shown) and new not in json.dumps(shown)
    first, header = _next_delivery(api, token, receiver)
    assert header.count("v1=") == 2
    # A receiver still on the old secret, and one already on the new, both accept it.
    verify_signature(old, header, first.body)
    verify_signature(new, header, first.body)
    # The overlap is over: the new secret alone signs.
    Webhook.objects.update(previous_secret_until=timezone.now())
    second, header = _next_delivery(api, token, receiver)
    assert header.count("v1=") == 1
    verify_signature(new, header, second.body)
    with pytest.raises(SignatureError):
        verify_signature(old, header, second.body)


@override_settings(WEBHOOK_SECRET_OVERLAP_SECONDS=0)
def test_without_an_overlap_a_rotation_is_immediate(
    api: Api, token: str, receiver: Receiver
) -> None:
    old = _hook(api, token, receiver, ["pushed"])
    new = api.post("/queues/jobs:q/webhooks/h/rotate-secret", {}, as_=token).body["secret"]
    request, header = _next_delivery(api, token, receiver)
    verify_signature(new, header, request.body)
    with pytest.raises(SignatureError):
        verify_signature(old, header, request.body)


def test_a_previous_secret_whose_key_was_retired_is_skipped(
    api: Api, token: str, receiver: Receiver, settings: Any
) -> None:
    """rotate_encryption_keys re-seals the current secret only: once the old key is
    gone the replaced secret cannot be opened, and the new one alone signs."""
    k1, k2 = f"k1:{generate_key()}", f"k2:{generate_key()}"
    settings.ENCRYPTION_KEYS = k1
    _hook(api, token, receiver, ["pushed"])
    new = api.post("/queues/jobs:q/webhooks/h/rotate-secret", {}, as_=token).body["secret"]
    settings.ENCRYPTION_KEYS = f"{k2},{k1}"
    webhooks_reseal(after=None, limit=10, actor=SENDER)
    settings.ENCRYPTION_KEYS = k2  # k1 retired, within the overlap
    request, header = _next_delivery(api, token, receiver)
    assert header.count("v1=") == 1
    verify_signature(new, header, request.body)
