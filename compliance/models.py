"""Compliance's own table: GDPR erasure receipts. The audit trail's tables and the
retention policies (whose audit row the chain obeys) live in compliance.audit.models,
one floor down; they are imported here so that Django registers them with this app."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.utils import timezone

from compliance.audit.models import (
    AUDIT_MIN_RETENTION_DAYS,
    AppendOnly,
    AuditCheckpoint,
    AuditEvent,
    RetentionPolicy,
    RetentionTarget,
    validate_queue_pattern,
)

__all__ = [
    "AUDIT_MIN_RETENTION_DAYS",
    "AppendOnly",
    "AuditCheckpoint",
    "AuditEvent",
    "ErasureRequest",
    "RetentionPolicy",
    "RetentionTarget",
    "validate_queue_pattern",
]


class ErasureRequest(models.Model):
    """The receipt of one GDPR erasure run: provable afterwards, with no personal data
    (the subject only as an HMAC pseudonym, so a later request for the same person can
    be matched to it without storing who they are)."""

    class Mode(models.TextChoices):
        REDACT = "redact"
        DELETE = "delete"

    created_at = models.DateTimeField(default=timezone.now)
    subject_pseudonym = models.CharField(max_length=64, db_index=True)
    mode = models.CharField(max_length=8, choices=Mode.choices)
    operator = models.CharField(max_length=150, help_text="who ran it (kind:name)")
    reason = models.CharField(max_length=500)
    counts = models.JSONField(default=dict, help_text="queue -> state -> jobs")
    held = models.JSONField(default=list, help_text="queues under legal hold, not erased")
    total = models.PositiveIntegerField(default=0)
    skipped = models.JSONField(
        default=list, help_text="queues the caller may not erase: not searched, not erased"
    )
    other_stores = models.CharField(
        max_length=200,
        blank=True,
        help_text="what the erasure left alone outside the jobs table, and why",
    )

    class Meta:
        ordering = ["-created_at"]
        permissions = [("erase_subject", "Can run GDPR erasures (dry run and execute)")]

    def __str__(self) -> str:
        return f"erasure {self.pk} ({self.mode}, {self.total} job(s))"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnly("erasure receipts cannot be changed")
        super().save(*args, **kwargs)
