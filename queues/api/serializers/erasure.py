"""The erasure request (compliance.api) and its answer."""

from __future__ import annotations

from rest_framework import serializers

from kernel import limits

from .fields import StrictBooleanField, StrictCharField, StrictSerializer


class ErasureIn(StrictSerializer):
    subject = StrictCharField(
        min_length=1,
        max_length=limits.MAX_SUBJECT_LENGTH,
        trim_whitespace=False,
        help_text="The data subject's identifier, as jobs carry it in `subject` or at the "
        "queue's `subject_path` (a number there matches its decimal string).",
    )
    mode = serializers.ChoiceField(choices=["redact", "delete"], default="redact")
    reason = StrictCharField(
        max_length=500,
        allow_blank=True,
        default="",
        help_text="Required to execute (a ticket or request reference); kept on the "
        "receipt and in the audit trail, so it must not contain the subject (in any "
        "letter case: a 400) nor a card number (a 422 naming `/reason`).",
    )
    execute = StrictBooleanField(default=False, help_text="false: a dry run, nothing changes")


class ErasureOut(serializers.Serializer):
    executed = serializers.BooleanField()
    mode = serializers.CharField()
    total = serializers.IntegerField(help_text="Jobs found in the queues this token may erase")
    counts = serializers.DictField(
        child=serializers.DictField(child=serializers.IntegerField()),
        help_text=(
            "queue -> state -> jobs (queues this token may erase only); the key "
            "`schedules` counts the queue's schedules about the subject, deleted in any mode"
        ),
    )
    redacted_fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="queue -> field names redacted (queues this token may erase only)",
    )
    held = serializers.ListField(
        child=serializers.CharField(),
        help_text="Queues this token may erase that hold jobs about the subject but are "
        "under legal hold: left alone",
    )
    skipped = serializers.ListField(
        child=serializers.CharField(),
        help_text="Queues this token may see but not erase: not searched and not erased, "
        "so nothing is said about what they hold",
    )
    other_stores = serializers.CharField(
        help_text="What the erasure leaves alone outside the jobs table, and why"
    )
    receipt_id = serializers.IntegerField(allow_null=True)
