"""The calling token, as getMe describes it."""

from __future__ import annotations

from rest_framework import serializers


class PermissionOut(serializers.Serializer):
    effect = serializers.ChoiceField(choices=["allow", "deny"])
    pattern = serializers.CharField()
    verbs = serializers.ListField(child=serializers.CharField())


class MeOut(serializers.Serializer):
    name = serializers.CharField()
    bootstrap = serializers.BooleanField(help_text="an AUTH_TOKENS entry: * on *, no expiry")
    family = serializers.CharField(help_text="tokens rotated from one another share it")
    created_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    allowed_cidrs = serializers.ListField(
        child=serializers.CharField(), help_text="empty: any address ALLOWED_CIDRS allows"
    )
    permissions = PermissionOut(many=True)
