"""The delivery worker: leases delivery jobs of the internal queue through the engine's
own services (a system actor), POSTs each event, signed with its webhook's current
secret (and the one it replaced, while a rotation's overlap lasts), through the SSRF
guard (kernel.safehttp), and acks the job on a 2xx answer or fails it otherwise, so
the engine retries it with backoff. Every attempt is recorded on the webhook
(services.webhook_delivered), which disables it after too many failures in a row. A
delivery whose webhook is gone or disabled is acked without being sent. A delivery the
engine will not let the sender settle (its lease ran out mid-send and another sender
took it) is logged and left to the engine: the pass goes on."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from compliance.audit import Actor
from kernel import safehttp
from kernel.counters import WEBHOOK_DELIVERIES
from kernel.limits import WEBHOOK_QUEUE
from kernel.problems import CardNumberDetected, FlashqError
from kernel.webhooksig import EVENT_ID_HEADER, SIGNATURE_HEADER, signature_header
from security.encryption import DecryptionFailed

from ..models import Job, JobState, Webhook
from ..pulling import jobs_pull
from ..services import job_ack, job_fail, job_release, webhook_delivered
from .dispatch import OWNER

logger = logging.getLogger("flashq.webhooks")

#: Ten deliveries of at most 5 s each, with room to spare.
LEASE_SECONDS = 120
MAX_DETAIL = 300
USER_AGENT = "flashQ-Webhooks/1"


@dataclass(frozen=True)
class Outcome:
    status: int | None
    #: Why it failed, for the job's error code and the webhook's last_error.
    code: str = ""
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def counted(self) -> str:
        """Its label on flashq_webhook_deliveries: delivered, refused or failed."""
        if self.ok:
            return "delivered"
        return "refused" if self.code == "refused" else "failed"


def _body(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":"), sort_keys=True).encode()


def _older_secrets(webhook: Webhook) -> list[str]:
    """The secret a rotation replaced, while its overlap lasts (and its key is kept)."""
    until = webhook.previous_secret_until
    if until is None or until <= timezone.now():
        return []
    try:
        previous = str(webhook.previous_secret or "")
    except DecryptionFailed:  # sealed under a key retired since: sign with the new one
        logger.warning("webhook %s: the previous secret cannot be opened", webhook.id)
        return []
    return [previous] if previous else []


def send(webhook: Webhook, event: dict[str, Any], *, now: float | None = None) -> Outcome:
    """POST one event to the webhook's URL; never raises for the exchange's failures."""
    body = _body(event)
    timestamp = int(now if now is not None else time.time())
    signed = signature_header(str(webhook.secret), body, timestamp, *_older_secrets(webhook))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: signed,
        EVENT_ID_HEADER: str(event.get("id", "")),
    }
    try:
        answer = safehttp.post(
            webhook.url,
            body=body,
            headers=headers,
            allowed=safehttp.Allowed.parse(settings.WEBHOOK_ALLOWED_HOSTS),
            ca_bundle=settings.WEBHOOK_CA_BUNDLE,
        )
    except safehttp.Refused as refused:
        # The address a host resolved to stays in the server's log: last_error is shown
        # to the queue's admins, and it would map the inside of the network for them.
        if refused.address is not None:
            logger.warning("webhook %s: refused %s", webhook.id, refused.address)
        return Outcome(None, "refused", str(refused)[:MAX_DETAIL])
    except safehttp.Unreachable as failed:
        return Outcome(None, "unreachable", str(failed)[:MAX_DETAIL])
    if 200 <= answer.status < 300:
        return Outcome(answer.status)
    return Outcome(answer.status, f"http_{answer.status}", f"answered {answer.status}")


def _webhook_id(job: Job) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(job.data.get("webhook")))
    except (AttributeError, ValueError):
        return None


def _settle(job: Job, *, actor: Actor) -> bool:
    """Send one leased delivery and settle its job; whether it was delivered."""
    assert job.lease_id is not None
    webhook_id = _webhook_id(job)
    webhook = None if webhook_id is None else Webhook.objects.filter(id=webhook_id).first()
    if webhook is None or not webhook.enabled:
        job_ack(
            job_id=job.id,
            lease_id=job.lease_id,
            owner=OWNER,
            result={"dropped": "webhook deleted" if webhook is None else "webhook disabled"},
            actor=actor,
        )
        return False
    outcome = send(webhook, dict(job.data.get("event") or {}))
    WEBHOOK_DELIVERIES.labels(outcome=outcome.counted).inc()
    disabled = webhook_delivered(
        webhook_id=webhook.id, status=outcome.status, error=outcome.detail, actor=actor
    )
    if outcome.ok:
        job_ack(
            job_id=job.id,
            lease_id=job.lease_id,
            owner=OWNER,
            result={"status": outcome.status},
            actor=actor,
        )
        return True
    logger.info("webhook %s: delivery failed: %s", webhook.id, outcome.code)
    fail = partial(
        job_fail,
        job_id=job.id,
        lease_id=job.lease_id,
        owner=OWNER,
        code=outcome.code,
        retry=not disabled,
        actor=actor,
    )
    try:
        fail(error=outcome.detail)
    except CardNumberDetected:  # a receiver's text the guard takes for a card number
        fail(error=outcome.code)
    return False


def _due() -> bool:
    """Whether a pull would find something: a delivery due, or one whose lease ran out
    (a pull finding nothing would still add an event to the audit trail, every pass)."""
    now = timezone.now()
    return Job.objects.filter(
        Q(state=JobState.WAITING, run_at__lte=now)
        | Q(state=JobState.ACTIVE, lease_expires_at__lt=now),
        queue__name=WEBHOOK_QUEUE,
    ).exists()


def _give_back(jobs: list[Job], *, actor: Actor) -> None:
    """Release leased deliveries not sent (the sender is stopping): waiting again, in
    their place, for the next sender."""
    for job in jobs:
        assert job.lease_id is not None
        try:
            job_release(job_id=job.id, lease_id=job.lease_id, owner=OWNER, actor=actor)
        except FlashqError as error:
            logger.warning("webhook delivery %s: not released: %s", job.id, error.code)


def deliver(
    *, actor: Actor, count: int = 10, stop: threading.Event | None = None
) -> tuple[int, int]:
    """Lease up to ``count`` due deliveries and send them, one after another: (sent,
    delivered). Once ``stop`` is set, the deliveries not yet sent are released."""
    if not _due():
        return 0, 0
    jobs = jobs_pull(
        queue_name=WEBHOOK_QUEUE,
        count=count,
        lease_seconds=LEASE_SECONDS,
        owner=OWNER,
        actor=actor,
    )
    sent = delivered = 0
    for index, job in enumerate(jobs):
        if stop is not None and stop.is_set():
            _give_back(jobs[index:], actor=actor)
            break
        sent += 1
        try:
            delivered += _settle(job, actor=actor)
        except FlashqError as error:
            # LeaseConflict and the like: the engine has the job; retrying here would
            # loop on it. Log and go on with the pass.
            logger.warning("webhook delivery %s: not settled: %s", job.id, error.code)
    return sent, delivered
