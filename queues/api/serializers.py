"""Request bodies of single-object operations (DRF serializers that refuse unknown
fields), and the shapes of responses, declared for the OpenAPI schema. Batch bodies are
validated as plain code (queues/jobspec.py, queues/api/batch.py)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .. import jobspec
from ..selectors import REPORTED_STATES


class StrictSerializer(serializers.Serializer):
    """A serializer that names unknown fields instead of silently dropping them."""

    def to_internal_value(self, data: Any) -> Any:
        unknown = set(data) - set(self.fields) if isinstance(data, dict) else set()
        errors: dict[str, Any] = {name: ["is not a known field"] for name in sorted(unknown)}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if isinstance(exc.detail, dict):
                errors.update(exc.detail)
            else:
                raise
        if errors:
            raise serializers.ValidationError(errors)
        return value


class StrictIntegerField(serializers.IntegerField):
    """Integers only: no "5", no 5.0, no true."""

    def to_internal_value(self, data: Any) -> int:
        if type(data) is not int:
            self.fail("invalid")
        return int(super().to_internal_value(data))


class StrictFloatField(serializers.FloatField):
    """JSON numbers only: no "5", no true."""

    def to_internal_value(self, data: Any) -> float:
        if type(data) not in (int, float):
            self.fail("invalid")
        return float(super().to_internal_value(data))


@extend_schema_field(OpenApiTypes.OBJECT)
class JobDataField(serializers.JSONField):
    def to_internal_value(self, data: Any) -> Any:
        problem = jobspec.data_problem(data, max_bytes=settings.MAX_JOB_BYTES)
        if problem:
            raise serializers.ValidationError(problem)
        return data


# -- request bodies ------------------------------------------------------------------


class BackoffDoc(serializers.Serializer):
    type = serializers.ChoiceField(choices=["fixed", "exponential"], default="exponential")
    delay = serializers.IntegerField(
        min_value=0, max_value=jobspec.MAX_BACKOFF_DELAY_MS, default=1000
    )
    max = serializers.IntegerField(
        min_value=0, max_value=jobspec.MAX_BACKOFF_CAP_MS, default=3_600_000, help_text="cap, ms"
    )
    jitter = serializers.FloatField(min_value=0, max_value=1, default=0.2)


class PushIn(serializers.Serializer):
    """Documentation of a push body; validated by queues.jobspec.parse_job_spec."""

    data = serializers.DictField(  # type: ignore[assignment]
        help_text="A JSON object, at most MAX_JOB_BYTES encoded."
    )
    priority = serializers.IntegerField(
        required=False,
        min_value=-jobspec.MAX_PRIORITY,
        max_value=jobspec.MAX_PRIORITY,
        help_text="Higher runs first. Default 0.",
    )
    delay = serializers.IntegerField(
        required=False, min_value=0, max_value=jobspec.MAX_DELAY_MS, help_text="ms before ready"
    )
    max_attempts = serializers.IntegerField(
        required=False, min_value=1, max_value=jobspec.MAX_ATTEMPTS, help_text="Default 3."
    )
    backoff = BackoffDoc(required=False, allow_null=True)
    ttl = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=jobspec.MAX_TTL_MS,
        help_text="ms; expires if not started by then",
    )
    key = serializers.CharField(
        required=False,
        allow_null=True,
        max_length=jobspec.MAX_KEY_LENGTH,
        help_text="Idempotency key: a re-push while the job is unfinished returns it (200).",
    )
    subject = serializers.CharField(
        required=False, allow_null=True, max_length=255, help_text="GDPR data subject"
    )
    tags = serializers.ListField(
        child=serializers.CharField(max_length=jobspec.MAX_TAG_LENGTH),
        required=False,
        allow_null=True,
        max_length=jobspec.MAX_TAGS,
    )


class PushBatchIn(serializers.Serializer):
    jobs = serializers.ListField(
        child=PushIn(), min_length=1, max_length=1000, help_text="1 to 1000 jobs, all or nothing"
    )


class PullIn(StrictSerializer):
    count = StrictIntegerField(min_value=1, max_value=1000, default=1)
    wait = StrictFloatField(
        min_value=0,
        max_value=settings.PULL_MAX_WAIT_SECONDS,
        default=0,
        help_text="Long-poll: seconds to wait for work when none is ready",
    )
    lease = StrictIntegerField(min_value=1, max_value=3600, default=30, help_text="seconds")


class AckIn(StrictSerializer):
    lease_id = serializers.UUIDField()
    result = serializers.JSONField(required=False, allow_null=True, default=None)


class AckItemDoc(serializers.Serializer):
    id = serializers.UUIDField()
    lease_id = serializers.UUIDField()
    result = serializers.JSONField(required=False, allow_null=True)


class AckBatchIn(serializers.Serializer):
    jobs = serializers.ListField(
        child=AckItemDoc(),
        min_length=1,
        max_length=1000,
        help_text="1 to 1000 acks, all or nothing",
    )


class AckBatchOut(serializers.Serializer):
    acked = serializers.IntegerField(help_text="How many jobs were completed")


class FailIn(StrictSerializer):
    lease_id = serializers.UUIDField()
    error = serializers.CharField(
        max_length=100_000,
        allow_blank=True,
        default="",
        help_text="Kept in the job's error history (first 10,000 characters).",
    )
    retry = serializers.BooleanField(default=True)


class ProgressIn(StrictSerializer):
    lease_id = serializers.UUIDField()
    progress = StrictIntegerField(min_value=0, max_value=100)
    message = serializers.CharField(max_length=1000, allow_blank=True, default="")


class UpdateIn(StrictSerializer):
    data = JobDataField()  # type: ignore[assignment]


class JobsQuery(StrictSerializer):
    state = serializers.ChoiceField(choices=list(REPORTED_STATES), required=False)
    limit = serializers.IntegerField(min_value=1, max_value=500, default=50)
    cursor = serializers.CharField(required=False, max_length=64)


# -- responses (documentation) -------------------------------------------------------


class JobSummaryOut(serializers.Serializer):
    id = serializers.UUIDField()
    queue = serializers.CharField()
    state = serializers.ChoiceField(choices=list(REPORTED_STATES))
    priority = serializers.IntegerField()
    attempts = serializers.IntegerField()
    max_attempts = serializers.IntegerField()
    key = serializers.CharField(allow_null=True)
    run_at = serializers.DateTimeField()
    created_at = serializers.DateTimeField()


class PushedOut(JobSummaryOut):
    created = serializers.BooleanField(help_text="false when an unfinished job had the key")


class PushBatchOut(serializers.Serializer):
    jobs = PushedOut(many=True)


class LeasedJobOut(serializers.Serializer):
    id = serializers.UUIDField()
    queue = serializers.CharField()
    data = serializers.JSONField()  # type: ignore[assignment]
    priority = serializers.IntegerField()
    attempts = serializers.IntegerField()
    max_attempts = serializers.IntegerField()
    progress = serializers.IntegerField()
    tags = serializers.ListField(child=serializers.CharField())
    lease_id = serializers.UUIDField()
    lease_expires_at = serializers.DateTimeField()
    created_at = serializers.DateTimeField()


class PullOut(serializers.Serializer):
    jobs = LeasedJobOut(many=True)


class ErrorEntryOut(serializers.Serializer):
    attempt = serializers.IntegerField()
    error = serializers.CharField()
    at = serializers.DateTimeField()


class JobDetailOut(serializers.Serializer):
    id = serializers.UUIDField()
    queue = serializers.CharField()
    state = serializers.ChoiceField(choices=list(REPORTED_STATES))
    priority = serializers.IntegerField()
    data = serializers.JSONField()  # type: ignore[assignment]
    result = serializers.JSONField(allow_null=True)
    error = serializers.CharField()
    errors = ErrorEntryOut(many=True)  # type: ignore[assignment]
    attempts = serializers.IntegerField()
    max_attempts = serializers.IntegerField()
    backoff = BackoffDoc()
    progress = serializers.IntegerField()
    progress_message = serializers.CharField()
    key = serializers.CharField(allow_null=True)
    subject = serializers.CharField(allow_null=True)
    tags = serializers.ListField(child=serializers.CharField())
    run_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    lease_expires_at = serializers.DateTimeField(allow_null=True)
    lease_id = serializers.UUIDField(
        required=False, help_text="Only to the token that holds the current lease."
    )


class JobPageOut(serializers.Serializer):
    jobs = JobDetailOut(many=True)
    next_cursor = serializers.CharField(allow_null=True)


class QueueOut(serializers.Serializer):
    name = serializers.CharField()
    paused = serializers.BooleanField()
    created_at = serializers.DateTimeField()


class QueueListOut(serializers.Serializer):
    queues = QueueOut(many=True)


class QueueStatsOut(QueueOut):
    counts = serializers.DictField(child=serializers.IntegerField())
    oldest_waiting_age_seconds = serializers.FloatField(allow_null=True)


class FieldErrorOut(serializers.Serializer):
    path = serializers.CharField(help_text="JSON Pointer into the request")
    message = serializers.CharField()


class ProblemOut(serializers.Serializer):
    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    code = serializers.CharField()
    errors = FieldErrorOut(many=True, required=False)  # type: ignore[assignment]
