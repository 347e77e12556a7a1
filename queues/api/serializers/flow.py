"""Bodies of the operations that move a job in time or hand it back: update (data,
priority, run_at), release, snooze, promote, and a queue's retry-failed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone
from rest_framework import serializers

from kernel import limits

from .fields import JobDataField, StrictCharField, StrictIntegerField, StrictSerializer


class UpdateIn(StrictSerializer):
    data = JobDataField(  # type: ignore[assignment]
        required=False, help_text="Replaces the data; only before the job first started."
    )
    priority = StrictIntegerField(
        required=False,
        min_value=-limits.MAX_PRIORITY,
        max_value=limits.MAX_PRIORITY,
        help_text="Higher runs first.",
    )
    run_at = serializers.DateTimeField(
        required=False,
        help_text="ISO 8601 (with its offset): when the job becomes ready. A past time "
        "makes it ready now; at most a year ahead.",
    )

    def validate_run_at(self, value: Any) -> Any:
        if value > timezone.now() + timedelta(milliseconds=limits.MAX_DELAY_MS):
            raise serializers.ValidationError("is more than a year ahead")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:
            raise serializers.ValidationError("give at least one of data, priority and run_at")
        return attrs


class ReleaseIn(StrictSerializer):
    lease_id = serializers.UUIDField()


class SnoozeIn(StrictSerializer):
    lease_id = serializers.UUIDField()
    delay_ms = StrictIntegerField(
        min_value=0, max_value=limits.MAX_DELAY_MS, help_text="ms before the job is ready again"
    )


class PromoteIn(StrictSerializer):
    reason = StrictCharField(
        required=False, allow_blank=True, max_length=500, default="", help_text="For the audit"
    )


class RetryFailedIn(StrictSerializer):
    since = serializers.DateTimeField(
        required=False, help_text="Only jobs that failed at or after this time"
    )
    until = serializers.DateTimeField(
        required=False, help_text="Only jobs that failed before this time"
    )
    limit = StrictIntegerField(
        min_value=1,
        max_value=limits.MAX_CLEAN_LIMIT,
        help_text=f"At most this many jobs (1 to {limits.MAX_CLEAN_LIMIT}), oldest first",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        since, until = attrs.get("since"), attrs.get("until")
        if since is not None and until is not None and since >= until:
            raise serializers.ValidationError({"until": ["is not after since"]})
        return attrs


class RetryFailedOut(serializers.Serializer):
    retried = serializers.IntegerField(help_text="How many failed jobs are waiting again")
