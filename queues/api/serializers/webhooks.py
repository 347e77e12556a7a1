"""Webhooks' request bodies and the shape of a webhook in responses. A webhook's secret
appears in exactly two answers: the PUT that created it and a rotation."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import serializers

from kernel import safehttp
from queues.eventmodels import EventKind

from .fields import StrictCharField, StrictSerializer

#: What a webhook may be sent (``reset`` is the event stream's own).
WEBHOOK_KINDS = [kind.value for kind in EventKind if kind is not EventKind.RESET]
MAX_EVENTS = len(WEBHOOK_KINDS)


class WebhookIn(StrictSerializer):
    url = StrictCharField(
        max_length=safehttp.MAX_URL_LENGTH,
        help_text="Where events are POSTed: an https:// URL without credentials, on port "
        "443 or 1024 and up. Its host may not be (or resolve to) a loopback, private, "
        "link-local, CGNAT or cloud-metadata address unless WEBHOOK_ALLOWED_HOSTS lists it.",
    )
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=WEBHOOK_KINDS),
        allow_empty=False,
        max_length=MAX_EVENTS,
        help_text="The event kinds to send, at least one.",
    )

    def validate_url(self, value: str) -> str:
        problem = safehttp.url_problem(
            value, safehttp.Allowed.parse(settings.WEBHOOK_ALLOWED_HOSTS)
        )
        if problem is not None:
            raise serializers.ValidationError(problem)
        return value

    def validate_events(self, value: list[Any]) -> list[str]:
        if len(set(value)) != len(value):
            raise serializers.ValidationError("lists an event kind twice")
        return [str(kind) for kind in value]


class WebhookOut(serializers.Serializer):
    name = serializers.CharField()
    queue = serializers.CharField()
    url = serializers.CharField()
    events = serializers.ListField(child=serializers.ChoiceField(choices=WEBHOOK_KINDS))
    enabled = serializers.BooleanField(
        help_text="False once WEBHOOK_MAX_FAILURES deliveries in a row failed over at "
        "least WEBHOOK_DISABLE_AFTER_SECONDS; a PUT enables it again."
    )
    consecutive_failures = serializers.IntegerField()
    failing_since = serializers.DateTimeField(
        allow_null=True, help_text="When the first of the failures in a row was"
    )
    rotation_overlap_until = serializers.DateTimeField(
        allow_null=True,
        help_text="After a rotation, deliveries are signed with the replaced secret too until then",
    )
    disabled_at = serializers.DateTimeField(allow_null=True)
    last_delivery_at = serializers.DateTimeField(allow_null=True)
    last_status = serializers.IntegerField(
        allow_null=True, help_text="The last delivery's HTTP status; null if none answered"
    )
    last_error = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class WebhookCreatedOut(WebhookOut):
    secret = serializers.CharField(
        help_text="The signing secret (`whsec_...`), shown in this answer only: keep it."
    )


class WebhookListOut(serializers.Serializer):
    webhooks = WebhookOut(many=True)
