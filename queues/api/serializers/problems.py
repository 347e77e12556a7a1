"""The problem+json body of every error response."""

from __future__ import annotations

from rest_framework import serializers


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
