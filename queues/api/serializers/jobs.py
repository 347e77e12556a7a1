"""Jobs' request bodies (push, pull, ack, fail, progress, the jobs and wait queries) and
the shapes of jobs in responses."""

from __future__ import annotations

from rest_framework import serializers

from kernel import limits

from ...selectors import REPORTED_STATES
from .fields import (
    ErrorCodeField,
    StrictFloatField,
    StrictIntegerField,
    StrictSerializer,
)

# -- request bodies ------------------------------------------------------------------


class BackoffDoc(serializers.Serializer):
    type = serializers.ChoiceField(choices=["fixed", "exponential"], default="exponential")
    delay = serializers.IntegerField(
        min_value=0,
        max_value=limits.MAX_BACKOFF_DELAY_MS,
        default=limits.DEFAULT_BACKOFF["delay"],
    )
    max = serializers.IntegerField(
        min_value=0,
        max_value=limits.MAX_BACKOFF_CAP_MS,
        default=limits.DEFAULT_BACKOFF["max"],
        help_text="cap, ms",
    )
    jitter = serializers.FloatField(
        min_value=0, max_value=1, default=limits.DEFAULT_BACKOFF["jitter"]
    )


class PushIn(serializers.Serializer):
    """Documentation of a push body; validated by queues.jobspec.parse_job_spec."""

    data = serializers.DictField(  # type: ignore[assignment]
        help_text="A JSON object, at most MAX_JOB_BYTES encoded (else 413)."
    )
    priority = serializers.IntegerField(
        required=False,
        min_value=-limits.MAX_PRIORITY,
        max_value=limits.MAX_PRIORITY,
        help_text="Higher runs first. Default 0.",
    )
    delay = serializers.IntegerField(
        required=False, min_value=0, max_value=limits.MAX_DELAY_MS, help_text="ms before ready"
    )
    max_attempts = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=limits.MAX_ATTEMPTS,
        help_text=f"Default {limits.DEFAULT_MAX_ATTEMPTS}.",
    )
    backoff = BackoffDoc(required=False, allow_null=True)
    ttl = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=limits.MAX_TTL_MS,
        help_text="ms; expires if not started by then",
    )
    timeout = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=limits.MAX_TIMEOUT_MS,
        help_text="ms: the processing deadline, counted from each claim. Heartbeats "
        "(`progress`) extend the lease but never past it; past it the attempt fails with "
        "code `timeout` (retried with backoff while attempts remain).",
    )
    key = serializers.CharField(
        required=False,
        allow_null=True,
        max_length=limits.MAX_KEY_LENGTH,
        help_text="Idempotency key: a re-push while the job is unfinished returns it (200). "
        "Stored in clear: a card number in it is a 422 naming `/key`.",
    )
    subject = serializers.CharField(
        required=False,
        allow_null=True,
        max_length=limits.MAX_SUBJECT_LENGTH,
        help_text="GDPR data subject. Stored in clear: a card number in it is a 422 naming "
        "`/subject`.",
    )
    tags = serializers.ListField(
        child=serializers.CharField(max_length=limits.MAX_TAG_LENGTH),
        required=False,
        allow_null=True,
        max_length=limits.MAX_TAGS,
        help_text="Stored in clear: a card number in a tag is a 422 naming it (`/tags/2`).",
    )
    group = serializers.CharField(
        required=False,
        allow_null=True,
        max_length=limits.MAX_GROUP_LENGTH,
        help_text="e.g. a customer id: at most the queue's `group_concurrency` (default 1) "
        "jobs of a group are active at once, FIFO within the group by priority then run "
        "time; other groups' jobs are handed out meanwhile. Stored in clear: a card number "
        "in it is a 422 naming `/group`.",
    )
    depends_on = serializers.ListField(
        child=serializers.UUIDField(),
        required=False,
        allow_null=True,
        max_length=limits.MAX_DEPENDS_ON,
        help_text=f"Up to {limits.MAX_DEPENDS_ON} ids (no repeats) of existing jobs this one "
        "waits for: it is `waiting-children` (never handed out) until all have completed, "
        "then `waiting`. Created `waiting` when all have completed already, and `failed` "
        "with `error_code` `dependency_failed` when one has failed, was cancelled or "
        "expired (then or later). An id that names no job, or a job in a queue where this "
        "token lacks `getJob`, is a 422 `unknown_dependency` naming the item "
        "(`/depends_on/0`; the same answer for both). Jobs wait on each other at most "
        f"{limits.MAX_WAIT_DEPTH} deep: this job's depth is 1 + the deepest of the jobs "
        "named that have not completed (0 for a job that waits for nothing; a flow's "
        "parent is 1 + its deepest child's), and past the limit the push is a 422 "
        "`wait_too_deep` naming `/depends_on`, nothing written. Ignored when `key` "
        "returns an existing job.",
    )


class PushBatchIn(serializers.Serializer):
    jobs = serializers.ListField(
        child=PushIn(),
        min_length=1,
        max_length=limits.MAX_BATCH,
        help_text=f"1 to {limits.MAX_BATCH} jobs, all or nothing",
    )


class AckItemDoc(serializers.Serializer):
    id = serializers.UUIDField()
    lease_id = serializers.UUIDField()
    result = serializers.JSONField(required=False, allow_null=True)


class PullIn(StrictSerializer):
    count = StrictIntegerField(min_value=1, max_value=limits.MAX_PULL_COUNT, default=1)
    wait = StrictFloatField(
        min_value=0,
        max_value=limits.MAX_WAIT_SECONDS,
        default=0,
        help_text="Long-poll: seconds to wait for work when none is ready",
    )
    lease = StrictIntegerField(
        min_value=1,
        max_value=limits.MAX_LEASE_SECONDS,
        default=limits.DEFAULT_LEASE_SECONDS,
        help_text="seconds",
    )
    # Documents the field; the view parses it as a batch ack's items are parsed.
    ack = serializers.ListField(
        child=AckItemDoc(),
        required=False,
        max_length=limits.MAX_BATCH,
        help_text=f"Piggy-backed acks: up to {limits.MAX_BATCH} jobs of this queue leased "
        "by this token's family (the previous batch), completed all or nothing in the same "
        "transaction as this pull's claim; needs the `ack` verb too. A stale lease is a 409 "
        "naming each item, and then nothing is acked or leased. Acks are applied once: if "
        "the answer to a pull that carried them is lost, a retry with the same acks gets "
        "that 409, and the worker drops them (they were applied) and pulls again.",
    )


class AckIn(StrictSerializer):
    lease_id = serializers.UUIDField()
    result = serializers.JSONField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Any JSON, at most MAX_JOB_BYTES encoded (else 413).",
    )


class AckBatchIn(serializers.Serializer):
    jobs = serializers.ListField(
        child=AckItemDoc(),
        min_length=1,
        max_length=limits.MAX_BATCH,
        help_text=f"1 to {limits.MAX_BATCH} acks, all or nothing; each id at most once",
    )


class AckBatchOut(serializers.Serializer):
    acked = serializers.IntegerField(help_text="How many jobs were completed")


class FailIn(StrictSerializer):
    lease_id = serializers.UUIDField()
    error = serializers.CharField(
        max_length=limits.MAX_FAIL_ERROR_INPUT,
        allow_blank=True,
        default="",
        help_text=f"Kept in the job's error history (the first {limits.MAX_ERROR_LENGTH:,} "
        f"characters; the last {limits.MAX_ERROR_HISTORY} attempts). Free text: shown as "
        "`[MASKED]` to anyone without `reveal` on the queue. A card number in it is a 422.",
    )
    code = ErrorCodeField(
        required=False,
        help_text="A short code for the failure (the Python worker sends the exception's "
        "class name, e.g. `TimeoutError`): 1 to 64 letters, digits, `.`, `_` or `-`, else "
        "a 400 naming `/code`. Kept with the attempt in `errors[]` and as the job's "
        "`error_code`, and shown to everyone (never masked), so operators can triage "
        "without `reveal`. A card number in it is a 422.",
    )
    retry = serializers.BooleanField(default=True)
    delay = StrictIntegerField(
        min_value=0,
        max_value=limits.MAX_DELAY_MS,
        required=False,
        help_text="ms before the retry, instead of the job's backoff: 0 gives the job back "
        "at once. The attempt still counts (`release` gives a job back without counting it).",
    )


class ProgressIn(StrictSerializer):
    lease_id = serializers.UUIDField()
    progress = StrictIntegerField(min_value=0, max_value=100)
    message = serializers.CharField(
        max_length=limits.MAX_PROGRESS_MESSAGE,
        allow_blank=True,
        default="",
        help_text="Kept as the job's `progress_message`: shown as `[MASKED]` to anyone "
        "without `reveal` on the queue. A card number in it is a 422 naming `/message`.",
    )


class JobsQuery(StrictSerializer):
    state = serializers.ChoiceField(choices=list(REPORTED_STATES), required=False)
    limit = serializers.IntegerField(
        min_value=1, max_value=limits.MAX_PAGE, default=limits.DEFAULT_PAGE
    )
    cursor = serializers.CharField(
        required=False, max_length=22, help_text="next_cursor of the previous page"
    )


class JobWaitQuery(StrictSerializer):
    timeout_ms = serializers.IntegerField(
        min_value=0,
        max_value=limits.MAX_JOB_WAIT_MS,
        default=limits.DEFAULT_JOB_WAIT_MS,
        help_text="How long to wait for the job to finish, in ms (0: answer at once).",
    )


# -- responses (documentation) -------------------------------------------------------


class JobSummaryOut(serializers.Serializer):
    id = serializers.UUIDField()
    queue = serializers.CharField()
    state = serializers.ChoiceField(choices=list(REPORTED_STATES))
    priority = serializers.IntegerField()
    attempts = serializers.IntegerField()
    max_attempts = serializers.IntegerField()
    key = serializers.CharField(allow_null=True)
    group = serializers.CharField(
        allow_null=True, help_text="The job's group (`group` on push), or null."
    )
    run_at = serializers.DateTimeField()
    created_at = serializers.DateTimeField()


class PushedOut(JobSummaryOut):
    created = serializers.BooleanField(help_text="false when an unfinished job had the key")


class PushBatchOut(serializers.Serializer):
    jobs = PushedOut(many=True)


TIMEOUT_TEXT = "ms: the job's processing deadline from each claim (push's `timeout`), or null."
DEADLINE_TEXT = (
    "While active with a timeout: when this attempt fails with code `timeout`. Heartbeats "
    "never extend the lease past it. Null otherwise."
)


class LeasedJobOut(serializers.Serializer):
    id = serializers.UUIDField()
    queue = serializers.CharField()
    data = serializers.JSONField()  # type: ignore[assignment]
    priority = serializers.IntegerField()
    attempts = serializers.IntegerField()
    max_attempts = serializers.IntegerField()
    progress = serializers.IntegerField()
    tags = serializers.ListField(child=serializers.CharField())
    group = serializers.CharField(
        allow_null=True, help_text="The job's group (`group` on push), or null."
    )
    lease_id = serializers.UUIDField()
    lease_expires_at = serializers.DateTimeField()
    timeout = serializers.IntegerField(allow_null=True, help_text=TIMEOUT_TEXT)
    deadline_at = serializers.DateTimeField(allow_null=True, help_text=DEADLINE_TEXT)
    created_at = serializers.DateTimeField()


class PullOut(serializers.Serializer):
    jobs = LeasedJobOut(many=True)


MASKED_TEXT = (
    "Free text from a worker: `[MASKED]` unless the token has both `getJob` and an "
    "explicit `reveal` grant on the job's queue; an empty text stays empty."
)


class ErrorEntryOut(serializers.Serializer):
    attempt = serializers.IntegerField()
    error = serializers.CharField(help_text=MASKED_TEXT)
    code = serializers.CharField(
        help_text="The attempt's code (`fail`'s `code`, or the server's: `lease_expired`, "
        "`timeout`); "
        "empty when none was given. Never masked."
    )
    at = serializers.DateTimeField()


class JobDetailOut(serializers.Serializer):
    id = serializers.UUIDField()
    queue = serializers.CharField()
    state = serializers.ChoiceField(choices=list(REPORTED_STATES))
    priority = serializers.IntegerField()
    data = serializers.JSONField()  # type: ignore[assignment]
    result = serializers.JSONField(allow_null=True)
    error = serializers.CharField(help_text=f"The latest failed attempt's text. {MASKED_TEXT}")
    error_code = serializers.CharField(
        help_text="The latest failed attempt's code; empty when none. Never masked."
    )
    errors = ErrorEntryOut(many=True)  # type: ignore[assignment]
    attempts = serializers.IntegerField()
    max_attempts = serializers.IntegerField()
    backoff = BackoffDoc()
    progress = serializers.IntegerField()
    progress_message = serializers.CharField(help_text=MASKED_TEXT)
    key = serializers.CharField(allow_null=True)
    group = serializers.CharField(
        allow_null=True, help_text="The job's group (`group` on push), or null."
    )
    subject = serializers.CharField(allow_null=True)
    tags = serializers.ListField(child=serializers.CharField())
    run_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    lease_expires_at = serializers.DateTimeField(allow_null=True)
    timeout = serializers.IntegerField(allow_null=True, help_text=TIMEOUT_TEXT)
    deadline_at = serializers.DateTimeField(allow_null=True, help_text=DEADLINE_TEXT)
    lease_id = serializers.UUIDField(
        required=False, help_text="Only to the token that holds the current lease."
    )


class JobPageOut(serializers.Serializer):
    jobs = JobDetailOut(many=True)
    next_cursor = serializers.CharField(allow_null=True)
