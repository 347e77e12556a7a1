"""Queues' request bodies (rate limit, concurrency, schema, clean) and the shapes of
queues in responses."""

from __future__ import annotations

from rest_framework import serializers

from kernel import limits

from .fields import JsonObjectField, StrictIntegerField, StrictSerializer


class RateLimitIn(StrictSerializer):
    max = StrictIntegerField(min_value=1, max_value=limits.MAX_RATE_LIMIT_JOBS)
    duration_ms = StrictIntegerField(min_value=1, max_value=limits.MAX_RATE_LIMIT_DURATION_MS)


class SchemaIn(StrictSerializer):
    schema = JsonObjectField(help_text="A JSON Schema (2020-12); only local $refs")


class CleanIn(StrictSerializer):
    grace_ms = StrictIntegerField(
        min_value=0,
        max_value=limits.MAX_CLEAN_GRACE_MS,
        help_text="Only jobs that finished at least this long ago",
    )
    state = serializers.ChoiceField(
        choices=["completed", "failed", "cancelled", "expired"], default="completed"
    )
    limit = StrictIntegerField(min_value=1, max_value=limits.MAX_CLEAN_LIMIT, default=1000)


class CleanOut(serializers.Serializer):
    deleted = serializers.DictField(
        child=serializers.DictField(child=serializers.IntegerField()),
        help_text="queue -> state -> jobs deleted",
    )
    total = serializers.IntegerField()
    skipped = serializers.ListField(
        child=serializers.CharField(),
        help_text="Queues the pattern reaches that this token may not clean",
    )
    held = serializers.ListField(
        child=serializers.CharField(), help_text="Queues under legal hold, left alone"
    )


class ConcurrencyIn(StrictSerializer):
    max = StrictIntegerField(min_value=1, max_value=limits.MAX_CONCURRENCY)


class GroupConcurrencyIn(StrictSerializer):
    max = StrictIntegerField(min_value=1, max_value=limits.MAX_GROUP_CONCURRENCY)


class RateLimitOut(serializers.Serializer):
    max = serializers.IntegerField()
    duration_ms = serializers.IntegerField()


class QueueOut(serializers.Serializer):
    name = serializers.CharField()
    paused = serializers.BooleanField()
    rate_limit = RateLimitOut(allow_null=True, help_text="jobs handed out per duration")
    concurrency = serializers.IntegerField(allow_null=True, help_text="most jobs active at once")
    group_concurrency = serializers.IntegerField(
        help_text="most jobs of one group (`group` on push) active at once"
    )
    schema = JsonObjectField(allow_null=True, help_text="JSON Schema of job data")
    created_at = serializers.DateTimeField()


class QueueListOut(serializers.Serializer):
    queues = QueueOut(many=True)


class QueueStatsOut(QueueOut):
    counts = serializers.DictField(child=serializers.IntegerField())
    oldest_waiting_age_seconds = serializers.FloatField(allow_null=True)
