"""The audit trail's tables: events (append-only, sealed into a keyed hash chain by
compliance.audit.chain), the checkpoints retention leaves behind, and the retention
policies: how long finished jobs and sealed events are kept (the chain obeys the
audit row; compliance.retention the others). They belong to the
``compliance`` app (its migrations), and compliance.models imports them so that Django
finds them."""

from __future__ import annotations

from typing import Any, ClassVar

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

from kernel.limits import PATTERN_RE

SEAL_FIELDS = frozenset({"seq", "prev_hash", "hash", "chain_key_id", "sealed_at"})


class AppendOnly(Exception):
    """The audit trail is append-only: events are never changed or deleted through the
    application, except sealing (once) and retention of sealed, checkpointed events."""


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    def update(self, **kwargs: Any) -> int:
        if not set(kwargs) <= SEAL_FIELDS:
            raise AppendOnly("audit events cannot be changed")
        return super().update(**kwargs)

    def delete(self) -> Any:
        raise AppendOnly("audit events cannot be deleted (retention: compliance.audit.chain)")

    def _retention_delete(self) -> int:
        """For compliance.audit.chain.retire_before only; the database refuses it too unless
        every row is sealed and covered by a checkpoint."""
        return int(super()._raw_delete(self.db))


class AuditEvent(models.Model):
    """One row per API call (allowed or not), admin action, command or system change.

    Holds who, what, where and how it ended; never payload data or secrets. Shortly
    after commit each event is sealed into an HMAC-SHA256 chain under AUDIT_CHAIN_KEY
    (``seq``, ``prev_hash``, ``hash``, ``chain_key_id``: compliance.audit.chain), after which
    it can neither change nor, until retention checkpoints it, be deleted."""

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
    job_ids = models.JSONField("job IDs", default=list, blank=True)
    # Ids, not foreign keys: the trail outlives the tokens and users it names.
    token_id = models.BigIntegerField("token ID", null=True, blank=True)
    user_id = models.BigIntegerField("user ID", null=True, blank=True)
    actor = models.CharField(
        max_length=150, blank=True, default="", help_text="kind:name, e.g. token:billing-worker"
    )
    client_ip = models.GenericIPAddressField("client IP", null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    status = models.PositiveSmallIntegerField(null=True, blank=True)
    request_id = models.CharField(
        "request ID",
        max_length=64,
        blank=True,
        default="",
        help_text="server-generated, unique per request",
    )
    client_request_id = models.CharField(
        "client request ID",
        max_length=64,
        blank=True,
        default="",
        help_text="the caller's X-Request-ID, if safe",
    )
    details = models.JSONField(default=dict, blank=True)
    # The hash chain, set once by the sealer (NULL until then).
    seq = models.BigIntegerField(
        "sequence number", null=True, blank=True, unique=True, editable=False
    )
    prev_hash = models.CharField(
        "previous hash", max_length=64, blank=True, default="", editable=False
    )
    hash = models.CharField(max_length=64, blank=True, default="", editable=False)
    # Which AUDIT_CHAIN_KEY entry made ``hash`` (covered by it, so it cannot be swapped).
    chain_key_id = models.CharField(
        "chain key ID", max_length=32, blank=True, default="", editable=False
    )
    sealed_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects: ClassVar[AuditEventQuerySet] = AuditEventQuerySet.as_manager()  # type: ignore[assignment]

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["queue", "created_at"], name="audit_queue_time_idx"),
            models.Index(
                fields=["id"], name="audit_unsealed_idx", condition=models.Q(seq__isnull=True)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.action} {self.outcome}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnly("audit events cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise AppendOnly("audit events cannot be deleted")


class AuditCheckpoint(models.Model):
    """Where the verifiable chain starts after retention removed the events before it:
    the last removed event's ``seq`` and ``hash``. Append-only, like the events, and
    chained too: ``mac`` is an HMAC under AUDIT_CHAIN_KEY over this row and the previous
    checkpoint's ``mac`` (compliance.audit.chainkeys), so a checkpoint forged with the
    triggers off is named by audit_verify."""

    seq = models.BigIntegerField("sequence number", unique=True)
    hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    events_removed = models.PositiveIntegerField(default=0)
    reason = models.CharField(max_length=200, blank=True, default="")
    key_id = models.CharField("key ID", max_length=32, blank=True, default="")
    mac = models.CharField("MAC", max_length=64, blank=True, default="")

    class Meta:
        ordering = ["-seq"]

    def __str__(self) -> str:
        return f"checkpoint at seq {self.seq}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnly("checkpoints cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise AppendOnly("checkpoints cannot be deleted")


class RetentionTarget(models.TextChoices):
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    AUDIT = "audit", "audit events (after sealing)"


# What a fresh installation keeps, in days (a data migration creates these rows).
DEFAULT_RETENTION_DAYS = {
    RetentionTarget.COMPLETED: 30,
    RetentionTarget.FAILED: 90,
    RetentionTarget.CANCELLED: 30,
    RetentionTarget.EXPIRED: 30,
    RetentionTarget.AUDIT: 90,
}

# Audit events are never deletable sooner than this after sealing, whatever the audit
# policy row says: the database's DELETE and checkpoint guards hold the same number
# (compliance migration 0012), because the app's own role can change that row.
AUDIT_MIN_RETENTION_DAYS = 30


def validate_queue_pattern(value: str) -> None:
    if not PATTERN_RE.fullmatch(value):
        raise ValidationError(
            "A queue name or pattern: letters, digits, _ . : - and * (any run of characters)."
        )


class RetentionPolicy(models.Model):
    """How long finished jobs of the queues a pattern matches (or audit events) are
    kept. For a queue, the most specific matching pattern wins (an exact name, then the
    longest pattern). No policy: kept until deleted by hand. Queues under legal hold
    are never purged."""

    queue_pattern = models.CharField(
        max_length=128, default="*", validators=[validate_queue_pattern]
    )
    target = models.CharField(max_length=16, choices=RetentionTarget.choices)
    max_age_days = models.PositiveIntegerField("max age (days)", validators=[MinValueValidator(1)])

    class Meta:
        ordering = ["target", "queue_pattern"]
        constraints = [
            models.UniqueConstraint(
                fields=["queue_pattern", "target"], name="retention_pattern_target_uniq"
            ),
            models.CheckConstraint(
                condition=models.Q(max_age_days__gte=1), name="retention_max_age_gte_1"
            ),
            models.CheckConstraint(
                condition=~models.Q(target="audit")
                | models.Q(max_age_days__gte=AUDIT_MIN_RETENTION_DAYS),
                name="retention_audit_floor",
                violation_error_message=(
                    f"Audit events are kept at least {AUDIT_MIN_RETENTION_DAYS} days after sealing."
                ),
            ),
        ]
        verbose_name_plural = "retention policies"

    def __str__(self) -> str:
        return f"{self.target} on {self.queue_pattern}: {self.max_age_days} days"

    def clean(self) -> None:
        if self.target != RetentionTarget.AUDIT:
            return
        errors = {}
        if self.queue_pattern != "*":
            errors["queue_pattern"] = "The audit trail is one chain: its policy applies to '*'."
        if self.max_age_days is not None and self.max_age_days < AUDIT_MIN_RETENTION_DAYS:
            errors["max_age_days"] = (
                f"Audit events are kept at least {AUDIT_MIN_RETENTION_DAYS} days after "
                "sealing: the database refuses to delete younger ones whatever this policy says."
            )
        if errors:
            raise ValidationError(errors)

    @property
    def specificity(self) -> tuple[bool, int]:
        return ("*" not in self.queue_pattern, len(self.queue_pattern))
