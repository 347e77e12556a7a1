"""Webhooks: a queue's subscriptions to its job events, delivered by POST to an https
URL (queues.webhooks). The signing secret is sealed at rest like a job's data: the
delivery worker opens it to sign, nothing else ever shows it after it was created or
rotated. ``WebhookCursor`` is where the dispatcher has read the job event log up to."""

from __future__ import annotations

import uuid6
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from kernel.limits import QUEUE_NAME_RE, QUEUE_NAME_RULE
from security.fields import SealedJSONField

from .validators import validate_no_card_number


class Webhook(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid6.uuid7, editable=False)
    queue = models.ForeignKey("queues.Queue", on_delete=models.CASCADE, related_name="webhooks")
    name = models.CharField(
        max_length=128,
        validators=[
            RegexValidator(r"\A" + QUEUE_NAME_RE.pattern + r"\Z", QUEUE_NAME_RULE),
            validate_no_card_number,
        ],
    )
    url = models.CharField(max_length=2000, validators=[validate_no_card_number])
    #: The kinds of queues.eventmodels.EventKind it is sent (never ``reset``).
    events = models.JSONField(default=list)
    #: ``whsec_...``, sealed with the row's id; read only to sign a delivery.
    secret = SealedJSONField()
    #: The secret before the last rotation, still signing (beside ``secret``) until
    #: ``previous_secret_until`` (WEBHOOK_SECRET_OVERLAP_SECONDS after the rotation).
    previous_secret = SealedJSONField(empty="")
    previous_secret_until = models.DateTimeField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    #: Failed delivery attempts in a row; WEBHOOK_MAX_FAILURES of them disable it, once
    #: it has been failing WEBHOOK_DISABLE_AFTER_SECONDS.
    consecutive_failures = models.PositiveIntegerField(default=0)
    #: When the first of those failures was (None: the last attempt succeeded).
    failing_since = models.DateTimeField(null=True, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    last_delivery_at = models.DateTimeField(null=True, blank=True)
    #: The last answer's HTTP status (None: no answer, see last_error).
    last_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["queue__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["queue", "name"], name="webhook_queue_name_uniq"),
        ]
        indexes = [
            # The dispatcher's lookup: the enabled webhooks of the queues in a batch.
            models.Index(
                fields=["queue"], name="webhook_enabled_idx", condition=models.Q(enabled=True)
            ),
        ]

    def __str__(self) -> str:
        return self.name


class WebhookCursor(models.Model):
    """One row: the dispatcher has queued the deliveries of every event up to and
    including ``(txid, event_id)`` (queues.events.log.Cursor), advanced in the same
    transaction as the delivery jobs it pushed."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    txid = models.BigIntegerField(default=0)
    event_id = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"webhooks dispatched through ({self.txid}, {self.event_id})"
