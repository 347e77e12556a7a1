"""Webhooks: save (create or replace), delete and rotate the secret of a queue's
webhooks, and the outcome of each delivery attempt, which disables a webhook after
``WEBHOOK_MAX_FAILURES`` failures in a row over at least
``WEBHOOK_DISABLE_AFTER_SECONDS``. Deliveries themselves are jobs of the
internal queue (kernel.limits.WEBHOOK_QUEUE), queued and sent by queues.webhooks.

The secret is made here, sealed at rest, and returned to the caller only when it is
made (a create, a rotation): audit events name the webhook, its URL and its events,
never the secret (nor the URL's path and query, which may hold the receiver's own
token: only its host)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import httpx
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from compliance.audit import Action, Actor, audit_record
from kernel.limits import WEBHOOK_QUEUE
from kernel.webhooksig import new_secret

from ..errors import WebhookNotFound
from ..models import Job, JobState, Queue, Webhook
from .common import full_clean_or_invalid, reason_details


def _locked(queue_name: str, name: str) -> Webhook:
    webhook: Webhook | None = (
        Webhook.objects.select_for_update(of=("self",))
        .select_related("queue")
        .filter(queue__name=queue_name, name=name)
        .first()
    )
    if webhook is None:
        raise WebhookNotFound()
    return webhook


def delivery_key_prefix(webhook_id: uuid.UUID) -> str:
    """Every delivery job of a webhook has a key starting with this (then the event)."""
    return f"{webhook_id}:"


def _drop_pending(webhook_id: uuid.UUID) -> int:
    """Delete the webhook's deliveries not yet started (one being sent finishes, and
    is dropped by the worker, which finds the webhook gone or disabled)."""
    deleted, _ = Job.objects.filter(
        queue__name=WEBHOOK_QUEUE,
        key__startswith=delivery_key_prefix(webhook_id),
        state=JobState.WAITING,
    ).delete()
    return deleted


def webhook_save(
    *, queue_name: str, name: str, url: str, events: Sequence[str], actor: Actor, reason: str = ""
) -> tuple[Webhook, str | None]:
    """Create or replace the webhook ``name`` of a queue (created if missing, as a
    schedule's PUT does). Returns it and its new secret when it was created (None on a
    replace, which keeps the secret). A save re-enables a disabled webhook and clears
    its failure count."""
    now = timezone.now()
    with transaction.atomic():
        queue, queue_created = Queue.objects.get_or_create(name=queue_name)
        webhook: Webhook | None = (
            Webhook.objects.select_for_update().filter(queue=queue, name=name).first()
        )
        secret = None
        if webhook is None:
            secret = new_secret()
            webhook = Webhook(queue=queue, name=name, created_at=now, secret=secret)
        created = secret is not None
        reenabled = not webhook.enabled
        webhook.url = url
        webhook.events = list(events)
        webhook.enabled = True
        webhook.consecutive_failures = 0
        webhook.failing_since = None
        webhook.disabled_at = None
        webhook.updated_at = now
        full_clean_or_invalid(webhook, exclude=["queue", "secret"], what="webhook")
        webhook.save(force_insert=created)
        audit_record(
            actor=actor,
            action=Action.WEBHOOK_SAVE,
            status=201 if created else 200,
            queue=queue_name,
            details={
                "name": name,
                # The host only: a URL's path or query may hold a receiver's own token.
                "host": httpx.URL(url).host,
                "events": list(events),
                "created": created,
                **({"reenabled": True} if reenabled else {}),
                **({"queue_created": True} if queue_created else {}),
                **reason_details(reason),
            },
        )
    return webhook, secret


def webhook_delete(*, queue_name: str, name: str, actor: Actor, reason: str = "") -> None:
    """Delete a webhook and its deliveries not yet started."""
    with transaction.atomic():
        webhook = _locked(queue_name, name)
        dropped = _drop_pending(webhook.id)
        webhook.delete()
        audit_record(
            actor=actor,
            action=Action.WEBHOOK_DELETE,
            status=204,
            queue=queue_name,
            details={"name": name, "dropped": dropped, **reason_details(reason)},
        )


def webhook_rotate_secret(
    *, queue_name: str, name: str, actor: Actor, reason: str = ""
) -> tuple[Webhook, str]:
    """Replace the signing secret; the new one is returned, once. Deliveries sent from
    now on (retries included) are signed with it and, for
    ``WEBHOOK_SECRET_OVERLAP_SECONDS``, with the one it replaces too (a second ``v1``),
    so a receiver can switch over without refusing deliveries."""
    now = timezone.now()
    overlap = timedelta(seconds=settings.WEBHOOK_SECRET_OVERLAP_SECONDS)
    with transaction.atomic():
        webhook = _locked(queue_name, name)
        secret = new_secret()
        webhook.previous_secret = str(webhook.secret) if overlap else ""
        webhook.previous_secret_until = now + overlap if overlap else None
        webhook.secret = secret
        webhook.updated_at = now
        webhook.save(
            update_fields=["secret", "previous_secret", "previous_secret_until", "updated_at"]
        )
        audit_record(
            actor=actor,
            action=Action.WEBHOOK_ROTATE_SECRET,
            queue=queue_name,
            details={"name": name, **reason_details(reason)},
        )
    return webhook, secret


def webhook_delivered(
    *, webhook_id: uuid.UUID, status: int | None, error: str = "", actor: Actor
) -> bool:
    """Record one delivery attempt: a 2xx ``status`` resets the failure count; anything
    else adds one (the first of a run starts ``failing_since``). Once there are
    ``WEBHOOK_MAX_FAILURES`` in a row AND the first of them is at least
    ``WEBHOOK_DISABLE_AFTER_SECONDS`` old, the webhook is disabled: its deliveries not
    yet started are dropped and WEBHOOK_DISABLE is recorded (by ``actor``, the system).
    A busy webhook is not disabled seconds into a short outage. Returns whether the
    webhook is disabled now (or gone)."""
    now = timezone.now()
    ok = status is not None and 200 <= status < 300
    with transaction.atomic():
        found = Webhook.objects.filter(id=webhook_id)
        changes: dict[str, Any] = {
            "last_delivery_at": now,
            "last_status": status,
            "last_error": error[:300],
            "consecutive_failures": 0 if ok else F("consecutive_failures") + 1,
            "failing_since": None if ok else Coalesce(F("failing_since"), now),
        }
        if not found.update(**changes):
            return True
        if ok:
            return False
        webhook = found.select_for_update().select_related("queue").get()
        if not webhook.enabled:
            return True
        if webhook.consecutive_failures < settings.WEBHOOK_MAX_FAILURES:
            return False
        failing_for = now - (webhook.failing_since or now)
        if failing_for < timedelta(seconds=settings.WEBHOOK_DISABLE_AFTER_SECONDS):
            return False
        webhook.enabled = False
        webhook.disabled_at = now
        webhook.save(update_fields=["enabled", "disabled_at"])
        dropped = _drop_pending(webhook.id)
        audit_record(
            actor=actor,
            action=Action.WEBHOOK_DISABLE,
            queue=webhook.queue.name,
            details={
                "name": webhook.name,
                "failures": webhook.consecutive_failures,
                "failing_seconds": int(failing_for.total_seconds()),
                "last_status": status,
                "dropped": dropped,
            },
        )
    return True
