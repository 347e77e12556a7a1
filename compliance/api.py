"""``POST /api/v1/compliance/erasures``: GDPR erasure for automated data-subject
requests, the same service (and receipt) as ``manage.py gdpr_erase``, decided per queue
by the verb ``erase``."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_view
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from kernel.problems import FieldError, InvalidInput
from queues import selectors
from queues.api import serializers
from queues.api.base import FlashqApiView
from queues.api.docs import operation_schema, problems
from queues.api.operations import Operation
from security.access import Verb

from .erasure import ErasureRefused, ReasonHoldsCardNumber, subject_erase


@extend_schema_view(
    post=operation_schema(
        Operation.ERASE,
        request=serializers.ErasureIn,
        responses={200: serializers.ErasureOut, **problems(415)},
        description="Find every job about a data subject (its `subject`, or the queue's "
        "`subject_path` in the data) and, with `execute: true` and a `reason`, redact "
        "(default) or delete them; without `execute` nothing changes (a dry run). "
        "Needs the verb `erase`, which `*` never grants, and it is decided per queue: "
        "only queues this token may erase are searched, counted and erased. Queues it "
        "may see but not erase are listed under `skipped` (as `clean` does) and nothing "
        "is said about what they hold; a token that may erase no queue at all gets 403. "
        "Queues under legal hold are left alone and listed under `held`. Only job rows "
        "change: the audit trail, model history and scheduler rows never hold payloads "
        "or subjects (`other_stores`). An executed run writes a receipt holding only an "
        "HMAC pseudonym of the subject.",
    )
)
class ErasureApi(FlashqApiView):
    operations = {"post": Operation.ERASE}

    def post(self, request: Request) -> Response:
        principal = self.principal
        if not any(principal.allows(Verb.ERASE, q.name) for q in selectors.queues_list()):
            raise PermissionDenied("This token may not erase on any queue.")
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
                may_erase=lambda name: principal.allows(Verb.ERASE, name),
            )
        except ReasonHoldsCardNumber:
            raise  # a 422 card-number-detected, as for any other field
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
                # Like listQueues: a queue this token cannot see is not named at all.
                "skipped": [name for name in outcome.skipped if principal.sees(name)],
                "other_stores": outcome.other_stores,
                "receipt_id": outcome.receipt.pk if outcome.receipt else None,
            }
        )
