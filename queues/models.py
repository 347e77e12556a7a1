from __future__ import annotations

import uuid6
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from kernel.limits import QUEUE_NAME_RE, QUEUE_NAME_RULE
from security.fields import SealedJSONField

from .validators import (
    default_pii_fields,
    default_sensitive_fields,
    validate_allowlist,
    validate_field_names,
    validate_job_schema,
    validate_no_card_number,
)


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
    rate_limit_max = models.PositiveIntegerField("rate limit (jobs)", null=True, blank=True)
    rate_limit_duration_ms = models.PositiveIntegerField(
        "rate limit period (ms)", null=True, blank=True
    )
    # At most this many jobs of the queue active at once.
    concurrency_max = models.PositiveIntegerField("concurrency limit", null=True, blank=True)
    json_schema = models.JSONField(
        "JSON schema",
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
        "PII fields",
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
    # At most this many active jobs per group (a job's ``group``), FIFO within a group.
    group_concurrency = models.PositiveIntegerField(default=1)
    # Set by the first push with a group and never cleared: pull uses the (costlier)
    # grouped claim only for queues that have ever had a grouped job.
    grouped = models.BooleanField(default=False, editable=False)
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
            models.CheckConstraint(
                condition=Q(group_concurrency__gte=1), name="queue_group_concurrency_gte_1"
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
    # Held back until the jobs it waits for (its children in a flow, its depends_on)
    # have finished (queues.dependents): never handed out, since the claim takes only
    # ``waiting``.
    WAITING_CHILDREN = "waiting-children"
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


UNFINISHED = (JobState.WAITING, JobState.WAITING_CHILDREN, JobState.ACTIVE)
FINISHED = (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.EXPIRED)
# What a waiting job counts as a failure of a job it waits for.
FAILED_FOR_GOOD = (JobState.FAILED, JobState.CANCELLED, JobState.EXPIRED)


class OnChildFailure(models.TextChoices):
    """What a parent does when one of its children fails for good (failed, cancelled or
    expired): set per flow, kept on each parent."""

    FAIL = "fail"  # the parent fails with code child_failed; unfinished children cancelled
    IGNORE = "ignore"  # the parent runs when the rest have finished
    CONTINUE = "continue"  # the same, and the parent is meant to look at the failure


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
    # ``timeout``: the processing deadline, in ms from each claim; the claim sets
    # deadline_at, and neither the lease nor a heartbeat ever runs past it.
    timeout_ms = models.PositiveIntegerField(null=True, blank=True)
    deadline_at = models.DateTimeField(null=True, blank=True, editable=False)
    # ``group``: at most the queue's group_concurrency active jobs per group. An active
    # grouped job holds one of the group's slots (1..group_concurrency), unique among
    # the group's active jobs (job_group_slot_uniq): whatever takes a job out of
    # ``active`` frees its slot, since the index only holds active jobs.
    group_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    group_slot = models.PositiveIntegerField(null=True, blank=True, editable=False)
    # Flows and dependencies (queues.dependents). ``watched``: something waits for this
    # job to finish, a job that depends on it (a JobDependency row) or a client's wait,
    # so whatever finishes it settles its dependents and wakes the waiters. Read in the
    # statements that finish a job anyway: a job nobody watches costs nothing more.
    watched = models.BooleanField(default=False, editable=False)
    on_child_failure = models.CharField(
        max_length=8, choices=OnChildFailure.choices, default=OnChildFailure.FAIL
    )
    # How deep this job waits on others (kernel.limits.MAX_WAIT_DEPTH): 0 when it waits
    # for nothing, else 1 + the deepest of what it waits for, counted when it is pushed
    # and kept as a bound (queues.dependents.wait_depth).
    depth = models.PositiveSmallIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # When it last became ``failed`` (its attempts spent); a retry leaves it.
    failed_at = models.DateTimeField(null=True, blank=True, editable=False)

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
            # A group's ready jobs in claim order (the grouped claim's probe).
            models.Index(
                "queue",
                "group_key",
                models.F("priority").desc(),
                "run_at",
                "id",
                name="job_group_ready_idx",
                condition=Q(state=JobState.WAITING, group_key__isnull=False),
            ),
            # A queue's jobs by when they last failed (the dashboard's failure links).
            models.Index(
                fields=["queue", "failed_at"],
                name="job_failed_at_idx",
                condition=Q(failed_at__isnull=False),
            ),
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
            models.UniqueConstraint(
                fields=["queue", "group_key", "group_slot"],
                condition=Q(state=JobState.ACTIVE, group_key__isnull=False),
                name="job_group_slot_uniq",
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


class DependencyKind(models.TextChoices):
    CHILD = "child"  # the job is a child of the waiting job in a flow
    DEPENDENCY = "dependency"  # the waiting job was pushed with depends_on it


class JobDependency(models.Model):
    """``job`` waits for ``depends_on`` to finish: a parent for its child, or a job for
    one of its ``depends_on``. Deleting either job deletes the row; whatever deletes an
    unfinished job that is waited for settles its dependents first."""

    id = models.BigAutoField(primary_key=True)
    # No index of its own: jobdep_job_target_uniq starts with it.
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="waits_for", db_index=False)
    depends_on = models.ForeignKey(
        Job, on_delete=models.CASCADE, related_name="waited_by", db_index=False
    )
    kind = models.CharField(max_length=10, choices=DependencyKind.choices)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "depends_on"], name="jobdep_job_target_uniq")
        ]
        indexes = [
            # A finishing job's dependents; retention's "is it waited for?".
            models.Index(fields=["depends_on", "job"], name="jobdep_target_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.job_id} waits for {self.depends_on_id} ({self.kind})"


class CatchUp(models.TextChoices):
    """What a schedule does with the ticks that fell due while nothing fired them."""

    NONE = "none"  # skip them; fire only a tick that is still on time
    LATEST = "latest"  # fire the most recent one
    ALL = "all"  # fire each, the most recent max_catch_up of them


class Schedule(models.Model):
    """A repeatable job: a cron expression (5 fields, or 6 with seconds first) in a time
    zone, or a fixed interval, and the template of the job each tick pushes. The
    template's data is sealed like a job's. ``next_run_at`` is the next tick to fire
    (None once ``end_at`` has passed); the scheduler advances it under a row lock in
    the same transaction as the tick's push, so a tick makes exactly one job."""

    id = models.UUIDField(primary_key=True, default=uuid6.uuid7, editable=False)
    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="schedules")
    name = models.CharField(
        max_length=128,
        validators=[
            RegexValidator(r"\A" + QUEUE_NAME_RE.pattern + r"\Z", QUEUE_NAME_RULE),
            validate_no_card_number,
        ],
    )
    cron = models.CharField(max_length=200, blank=True, default="")
    every_ms = models.PositiveBigIntegerField("every (ms)", null=True, blank=True)
    time_zone = models.CharField(max_length=64, default="UTC")  # IANA, e.g. Europe/Berlin
    # The job template.
    data = SealedJSONField()
    priority = models.IntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=3)
    backoff = models.JSONField(default=dict, blank=True)
    timeout_ms = models.PositiveIntegerField("timeout (ms)", null=True, blank=True)
    tags = models.JSONField(default=list, blank=True)
    subject = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    start_at = models.DateTimeField(null=True, blank=True)
    end_at = models.DateTimeField(null=True, blank=True)
    catch_up = models.CharField(max_length=8, choices=CatchUp.choices, default=CatchUp.LATEST)
    max_catch_up = models.PositiveIntegerField(default=10)
    paused = models.BooleanField(default=False)
    next_run_at = models.DateTimeField(null=True, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)  # the last tick fired
    last_job_id = models.UUIDField(null=True, blank=True)
    # Who saved it (a token family's key or a staff user): its jobs' pushed_by.
    created_by = models.CharField(max_length=160, blank=True, default="", editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["queue__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["queue", "name"], name="schedule_queue_name_uniq"),
            models.CheckConstraint(
                condition=(Q(every_ms__isnull=True) & ~Q(cron=""))
                | (Q(every_ms__gte=1) & Q(cron="")),
                name="schedule_cron_or_every",
            ),
            models.CheckConstraint(
                condition=Q(max_attempts__gte=1), name="schedule_attempts_gte_1"
            ),
        ]
        indexes = [
            # The scheduler's scan: live schedules by their next tick.
            models.Index(
                fields=["next_run_at"],
                name="schedule_due_idx",
                condition=Q(paused=False, next_run_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return self.name


# The job event log lives in its own module (its models are the app's all the same).
from .eventmodels import EventKind as EventKind  # noqa: E402
from .eventmodels import EventLogMark as EventLogMark  # noqa: E402
from .eventmodels import JobEvent as JobEvent  # noqa: E402

# The per-minute rollup too.
from .statsmodels import JobMinute as JobMinute  # noqa: E402

# Webhooks live in their own module too.
from .webhookmodels import Webhook as Webhook  # noqa: E402
from .webhookmodels import WebhookCursor as WebhookCursor  # noqa: E402
