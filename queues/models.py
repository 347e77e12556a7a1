from __future__ import annotations

import uuid6
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from kernel.limits import QUEUE_NAME_RE, QUEUE_NAME_RULE
from security.cards import has_card_number, validate_pointer_list
from security.fields import SealedJSONField
from security.jobschema import schema_problem
from security.masking import DEFAULT_SENSITIVE_FIELDS


def validate_allowlist(value: object) -> None:
    if value is None:
        return
    try:
        validate_pointer_list(value)
    except ValueError as exc:
        raise ValidationError(str(exc), code="invalid_allowlist") from exc


def validate_no_card_number(value: str) -> None:
    # A queue's name is shown to everyone who may see the queue and kept in the trail.
    if has_card_number(value):
        raise ValidationError("May not hold a payment card number.", code="card_number")


def default_sensitive_fields() -> list[str]:
    return list(DEFAULT_SENSITIVE_FIELDS)


def default_pii_fields() -> list[str]:
    return ["email", "name", "personalData"]


def validate_field_names(value: object) -> None:
    if not isinstance(value, list) or not all(
        isinstance(name, str) and 0 < len(name) <= 200 for name in value
    ):
        raise ValidationError('A list of field names, e.g. ["ssn", "password"].')


def validate_job_schema(value: object) -> None:
    problem = None if value is None else schema_problem(value)
    if problem:
        raise ValidationError(problem, code="invalid_schema")


class Queue(models.Model):
    name = models.CharField(
        max_length=128,
        unique=True,
        validators=[
            RegexValidator(r"\A" + QUEUE_NAME_RE.pattern + r"\Z", QUEUE_NAME_RULE),
            validate_no_card_number,
        ],
    )
    paused = models.BooleanField(default=False)
    subject_path = models.CharField(
        max_length=200,
        default="userId",
        help_text="Dotted path in job data naming the data subject (GDPR), e.g. userId",
    )
    # setRateLimit: at most rate_limit_max jobs handed out by pull per
    # rate_limit_duration_ms, across all app servers (kernel.ratelimit).
    rate_limit_max = models.PositiveIntegerField(null=True, blank=True)
    rate_limit_duration_ms = models.PositiveIntegerField(null=True, blank=True)
    # At most this many jobs of the queue active at once.
    concurrency_max = models.PositiveIntegerField(null=True, blank=True)
    json_schema = models.JSONField(
        null=True,
        blank=True,
        validators=[validate_job_schema],
        help_text="A JSON Schema (2020-12) every job's data must satisfy; formats are "
        "asserted and only local $refs are allowed.",
    )
    sensitive_fields = models.JSONField(
        default=default_sensitive_fields,
        blank=True,
        validators=[validate_field_names],
        help_text="Keys whose values getJob and getJobs show as [MASKED] unless the token "
        "has an explicit reveal grant on the queue (workers' pull is never masked).",
    )
    pii_fields = models.JSONField(
        default=default_pii_fields,
        blank=True,
        validators=[validate_field_names],
        help_text="Keys holding personal data: GDPR erasure replaces their values (and "
        "the sensitive fields') with [REDACTED] in data and result.",
    )
    max_job_bytes = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="A lower cap than MAX_JOB_BYTES for this queue's job data (bytes).",
    )
    card_allowlist = models.JSONField(
        null=True,
        blank=True,
        validators=[validate_allowlist],
        help_text="Known false positives of the card-number guard: JSON Pointers into job "
        'data, e.g. ["/order/reference"]. Card-secret fields are never allowed.',
    )
    legal_hold = models.BooleanField(
        default=False,
        help_text="Under legal hold nothing of the queue is purged by retention or erased.",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]
        permissions = [
            ("operate_queue", "Can retry, cancel and delete the queue's jobs"),
            ("reveal_queue", "Can see the queue's sensitive fields unmasked"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(rate_limit_max__isnull=True, rate_limit_duration_ms__isnull=True)
                | Q(rate_limit_max__gte=1, rate_limit_duration_ms__gte=1),
                name="queue_rate_limit_whole",
            ),
            models.CheckConstraint(
                condition=Q(concurrency_max__isnull=True) | Q(concurrency_max__gte=1),
                name="queue_concurrency_gte_1",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.max_job_bytes is not None and self.max_job_bytes > settings.MAX_JOB_BYTES:
            raise ValidationError(
                {"max_job_bytes": f"At most MAX_JOB_BYTES ({settings.MAX_JOB_BYTES})."}
            )

    @property
    def job_bytes_limit(self) -> int:
        return int(self.max_job_bytes or settings.MAX_JOB_BYTES)


class JobState(models.TextChoices):
    WAITING = "waiting"
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


UNFINISHED = (JobState.WAITING, JobState.ACTIVE)


class Job(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid6.uuid7, editable=False)
    # No index of its own: the composite indexes below start with it.
    queue = models.ForeignKey(Queue, on_delete=models.PROTECT, related_name="jobs", db_index=False)
    state = models.CharField(max_length=16, choices=JobState.choices, default=JobState.WAITING)
    priority = models.IntegerField(default=0)
    # Payloads: AES-256-GCM in the column, bound to the job id and field name
    # (security.fields). A missing result, error or history is NULL, not a sealed empty.
    data = SealedJSONField()
    result = SealedJSONField(empty=None)
    error = SealedJSONField(empty="")
    errors = SealedJSONField(empty=[])
    # The latest failed attempt's short code (``fail``'s ``code``, or the server's own,
    # e.g. lease_expired): letters, digits and ._- only, so it is shown to everyone
    # while the error text is masked without reveal.
    error_code = models.CharField(max_length=64, blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=3)
    backoff = models.JSONField(default=dict, blank=True)
    run_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    # NULL, not "": jobs without a key must never collide in job_key_unfinished_uniq.
    key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    subject = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    tags = models.JSONField(default=list, blank=True)
    # Who pushed it (a token family's key, see Principal.key): a re-push of its
    # idempotency key by anyone else is a conflict, not a way to learn about the job.
    pushed_by = models.CharField(max_length=160, blank=True, default="", editable=False)
    progress = models.PositiveSmallIntegerField(default=0)
    progress_message = models.CharField(max_length=1000, blank=True, default="")
    lease_id = models.UUIDField(null=True, blank=True, editable=False)
    lease_owner = models.CharField(max_length=160, blank=True, default="", editable=False)
    lease_seconds = models.PositiveIntegerField(default=30)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # The ready set, in claim order; pull's claim query relies on it.
            models.Index(
                "queue",
                models.F("priority").desc(),
                "run_at",
                "id",
                name="job_ready_idx",
                condition=Q(state=JobState.WAITING),
            ),
            # Leases to sweep: small (active jobs only).
            models.Index(
                fields=["lease_expires_at"],
                name="job_lease_idx",
                condition=Q(state=JobState.ACTIVE),
            ),
            # getJobs and stats: a queue's jobs by state, in id (= time) order; also
            # retention's scan, and the foreign key's (no index of its own).
            models.Index(fields=["queue", "state", "id"], name="job_queue_state_idx"),
            # GDPR erasure by subject (exact match); jobs without one are not in it.
            models.Index(
                fields=["subject"], name="job_subject_idx", condition=Q(subject__isnull=False)
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["queue", "key"],
                condition=Q(key__isnull=False, state__in=UNFINISHED),
                name="job_key_unfinished_uniq",
            ),
            models.CheckConstraint(condition=Q(max_attempts__gte=1), name="job_max_attempts_gte_1"),
            models.CheckConstraint(
                condition=Q(progress__gte=0, progress__lte=100), name="job_progress_0_100"
            ),
        ]
        permissions = [
            ("retry_job", "Can retry failed, cancelled or expired jobs"),
            ("cancel_job", "Can cancel unfinished jobs"),
            ("reveal_job", "Can see jobs' sensitive fields unmasked"),
        ]

    def __str__(self) -> str:
        return str(self.id)
