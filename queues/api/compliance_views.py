"""``POST /api/v1/compliance/erasures``: GDPR erasure for automated data-subject
requests, the same service (and receipt) as ``manage.py gdpr_erase``."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_view
from rest_framework.request import Request
from rest_framework.response import Response

from flashq_project.problems import FieldError, InvalidInput

from ..erasure import ErasureRefused, subject_erase
from . import serializers
from .base import FlashqApiView
from .docs import operation_schema, problems
from .operations import Operation


@extend_schema_view(
    post=operation_schema(
        Operation.ERASE,
        request=serializers.ErasureIn,
        responses={200: serializers.ErasureOut, **problems(415)},
        description="Find every job about a data subject (its `subject`, or the queue's "
        "`subject_path` in the data) and, with `execute: true` and a `reason`, redact "
        "(default) or delete them; without `execute` nothing changes (a dry run). Queues "
        "under legal hold are skipped and listed. An executed run writes a receipt "
        "holding only an HMAC pseudonym of the subject. Needs `admin` on `*`.",
    )
)
class ErasureApi(FlashqApiView):
    operations = {"post": Operation.ERASE}

    def post(self, request: Request) -> Response:
        self.authorize("*")
        params = serializers.ErasureIn(data=request.data)
        params.is_valid(raise_exception=True)
        values = params.validated_data
        try:
            outcome = subject_erase(
                subject=values["subject"],
                mode=values["mode"],
                reason=values["reason"],
                execute=values["execute"],
                actor=self.actor(),
            )
        except ErasureRefused as exc:
            raise InvalidInput(str(exc), errors=[FieldError("/reason", str(exc))]) from None
        return Response(
            {
                "executed": outcome.executed,
                "mode": outcome.mode,
                "total": outcome.total,
                "counts": outcome.counts,
                "redacted_fields": outcome.fields,
                "held": outcome.held,
                "receipt_id": outcome.receipt.pk if outcome.receipt else None,
            }
        )
