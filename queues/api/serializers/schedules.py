"""Schedules' request bodies and the shape of a schedule in responses. The PUT body is
validated as plain code (queues.schedulespec); ScheduleIn documents it."""

from __future__ import annotations

from rest_framework import serializers

from kernel import limits
from queues.schedulespec import (
    DEFAULT_MAX_CATCH_UP,
    MAX_CATCH_UP,
    MAX_EVERY_MS,
    MAX_TIME_ZONE_LENGTH,
    MIN_EVERY_MS,
)

from .fields import StrictCharField, StrictSerializer
from .jobs import BackoffDoc


class ScheduleIn(serializers.Serializer):
    """Documentation of a schedule PUT body; validated by queues.schedulespec. A field
    not listed here is a 400 naming it."""

    cron = serializers.CharField(
        required=False,
        max_length=200,
        help_text="A cron expression: 5 fields, or 6 with seconds first. Exactly one of "
        "`cron` and `every_ms`.",
    )
    every_ms = serializers.IntegerField(
        required=False,
        min_value=MIN_EVERY_MS,
        max_value=MAX_EVERY_MS,
        help_text="An interval in ms; ticks are start_at (or the creation second) + k x every_ms.",
    )
    timezone = serializers.CharField(
        required=False,
        default="UTC",
        max_length=MAX_TIME_ZONE_LENGTH,
        help_text="IANA time zone the cron is read in",
    )
    data = serializers.DictField(  # type: ignore[assignment]
        help_text="The job template's data: a JSON object, checked against the queue's "
        "schema and card guard as a push is, and encrypted at rest."
    )
    priority = serializers.IntegerField(
        required=False, min_value=-limits.MAX_PRIORITY, max_value=limits.MAX_PRIORITY
    )
    max_attempts = serializers.IntegerField(
        required=False, min_value=1, max_value=limits.MAX_ATTEMPTS
    )
    backoff = BackoffDoc(required=False, allow_null=True)
    timeout = serializers.IntegerField(
        required=False, min_value=1, max_value=limits.MAX_TIMEOUT_MS, help_text="ms"
    )
    tags = serializers.ListField(
        child=serializers.CharField(max_length=limits.MAX_TAG_LENGTH),
        required=False,
        max_length=limits.MAX_TAGS,
    )
    subject = serializers.CharField(required=False, max_length=limits.MAX_SUBJECT_LENGTH)
    start_at = serializers.DateTimeField(
        required=False, help_text="No tick before this (ISO 8601 with an offset)"
    )
    end_at = serializers.DateTimeField(required=False, help_text="No tick after this")
    catch_up = serializers.ChoiceField(
        choices=["none", "latest", "all"],
        default="latest",
        help_text="Ticks missed while nothing fired: `none` skips them (a tick at most 90 "
        "s late still fires), `latest` fires the most recent, `all` each of the most "
        "recent `max_catch_up`.",
    )
    max_catch_up = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_CATCH_UP, default=DEFAULT_MAX_CATCH_UP
    )


class ScheduleOut(serializers.Serializer):
    name = serializers.CharField()
    queue = serializers.CharField()
    cron = serializers.CharField(allow_null=True)
    every_ms = serializers.IntegerField(allow_null=True)
    timezone = serializers.CharField()
    data = serializers.DictField(  # type: ignore[assignment]
        help_text="The template's data; the queue's sensitive fields are `[MASKED]` "
        "without `reveal`."
    )
    priority = serializers.IntegerField()
    max_attempts = serializers.IntegerField()
    backoff = BackoffDoc()
    timeout = serializers.IntegerField(allow_null=True)
    tags = serializers.ListField(child=serializers.CharField())
    subject = serializers.CharField(allow_null=True)
    start_at = serializers.DateTimeField(allow_null=True)
    end_at = serializers.DateTimeField(allow_null=True)
    catch_up = serializers.CharField()
    max_catch_up = serializers.IntegerField()
    paused = serializers.BooleanField()
    next_run_at = serializers.DateTimeField(
        allow_null=True, help_text="The next tick to fire; null once end_at is past"
    )
    last_run_at = serializers.DateTimeField(allow_null=True, help_text="The last tick fired")
    last_job_id = serializers.UUIDField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class ScheduleListOut(serializers.Serializer):
    schedules = ScheduleOut(many=True)


class ReasonIn(StrictSerializer):
    reason = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=500,
        default="",
        help_text="Kept in the audit event",
    )
