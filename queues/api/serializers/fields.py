"""The fields and base serializer every request body uses: JSON types taken as they
are (no "5" for 5, no 1 for true) and unknown fields named, not dropped."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ... import jobspec


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
    """Job data: a JSON object; over MAX_JOB_BYTES is a 413 naming the field."""

    def to_internal_value(self, data: Any) -> Any:
        problems = jobspec.Problems()
        jobspec.check_data(
            data, path=f"/{self.field_name}", problems=problems, max_bytes=settings.MAX_JOB_BYTES
        )
        if problems.invalid:
            raise serializers.ValidationError(problems.invalid[0].message)
        problems.raise_any()
        return data


@extend_schema_field(OpenApiTypes.OBJECT)
class JsonObjectField(serializers.JSONField):
    """A JSON object, documented as one (a plain JSONField is "any value" in the
    schema, so generated clients and fuzzers would send arrays the service refuses)."""


# A failed attempt's code: short, and safe to show to anyone who may read the job.
ERROR_CODE_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"


class ErrorCodeField(serializers.RegexField):
    """A JSON string matching ERROR_CODE_PATTERN: no 7, no true."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(ERROR_CODE_PATTERN, trim_whitespace=False, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class StrictBooleanField(serializers.BooleanField):
    """JSON true or false only: no "yes", no 1."""

    def to_internal_value(self, data: Any) -> bool:
        if type(data) is not bool:
            self.fail("invalid", input=data)
        return data


class StrictCharField(serializers.CharField):
    """JSON strings only: no 0, no true, no list (DRF's CharField would turn 0 into
    "0" and run an erasure of the subject "0")."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))
