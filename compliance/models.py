from __future__ import annotations

from django.db import models
from django.utils import timezone


class AuditEvent(models.Model):
    """One row per API call (allowed or not), admin action, command or system change.

    Holds who, what, where and how it ended; never payload data or secrets."""

    class Outcome(models.TextChoices):
        OK = "ok"
        DENIED = "denied"
        INVALID = "invalid"
        NOT_FOUND = "not_found"
        CONFLICT = "conflict"
        ERROR = "error"

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    action = models.CharField(max_length=64)
    queue = models.CharField(max_length=128, blank=True, default="")
    job_ids = models.JSONField(default=list, blank=True)
    # Ids, not foreign keys: the trail outlives the tokens and users it names.
    token_id = models.BigIntegerField(null=True, blank=True)
    user_id = models.BigIntegerField(null=True, blank=True)
    actor = models.CharField(
        max_length=150, blank=True, default="", help_text="kind:name, e.g. token:billing-worker"
    )
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    status = models.PositiveSmallIntegerField(null=True, blank=True)
    request_id = models.CharField(
        max_length=64, blank=True, default="", help_text="server-generated, unique per request"
    )
    client_request_id = models.CharField(
        max_length=64, blank=True, default="", help_text="the caller's X-Request-ID, if safe"
    )
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["queue", "created_at"], name="audit_queue_time_idx")]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.action} {self.outcome}"
