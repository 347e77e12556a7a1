"""Operations that hand a job back or move it in time: release and snooze (the lease
holder's, the attempt not counted), promote (a delayed job ready now), and a queue's
retry-failed (the dead letters back to waiting in one call)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_view
from rest_framework.request import Request
from rest_framework.response import Response

from .. import services
from . import serializers
from .base import FlashqApiView
from .docs import operation_schema, problems
from .job_views import _JobView, _valid
from .operations import Operation

_held: dict[Any, Any] = {200: serializers.JobDetailOut, **problems(404, 409, 415)}


@extend_schema_view(
    post=operation_schema(
        Operation.RELEASE,
        request=serializers.ReleaseIn,
        responses=_held,
        description="Give a job you hold back at once: `waiting` and ready, the attempt not "
        "counted (a worker shutting down). Needs `pull`; the lease must be current and "
        "this token family's, as for `ack` (else 409).",
    )
)
class JobReleaseApi(_JobView):
    operations = {"post": Operation.RELEASE}

    def post(self, request: Request, job_id: str) -> Response:
        job_uuid = self.job_id()
        self.authorize_job(job_uuid)
        params = _valid(serializers.ReleaseIn, request.data)
        job = services.job_release(
            job_id=job_uuid,
            lease_id=params["lease_id"],
            owner=self.principal.key,
            actor=self.actor(),
        )
        return self.render_job(job)


@extend_schema_view(
    post=operation_schema(
        Operation.SNOOZE,
        request=serializers.SnoozeIn,
        responses=_held,
        description="Give a job you hold back to run again after `delay_ms` (reported as "
        "`delayed` meanwhile), the attempt not counted. Needs `pull`; the lease must be "
        "current and this token family's (else 409).",
    )
)
class JobSnoozeApi(_JobView):
    operations = {"post": Operation.SNOOZE}

    def post(self, request: Request, job_id: str) -> Response:
        job_uuid = self.job_id()
        self.authorize_job(job_uuid)
        params = _valid(serializers.SnoozeIn, request.data)
        job = services.job_snooze(
            job_id=job_uuid,
            lease_id=params["lease_id"],
            owner=self.principal.key,
            delay_ms=params["delay_ms"],
            actor=self.actor(),
        )
        return self.render_job(job)


@extend_schema_view(
    post=operation_schema(
        Operation.PROMOTE,
        request=serializers.PromoteIn,
        responses={200: serializers.JobDetailOut, **problems(404, 409, 415)},
        description="Run a delayed job (waiting, `run_at` in the future) now: it becomes "
        "ready at once. Any other job is a 409. Needs `update`.",
    )
)
class JobPromoteApi(_JobView):
    operations = {"post": Operation.PROMOTE}

    def post(self, request: Request, job_id: str) -> Response:
        job_uuid = self.job_id()
        self.authorize_job(job_uuid)
        params = _valid(serializers.PromoteIn, request.data or {})
        job = services.job_promote(job_id=job_uuid, actor=self.actor(), reason=params["reason"])
        return self.render_job(job)


@extend_schema_view(
    post=operation_schema(
        Operation.RETRY_FAILED,
        request=serializers.RetryFailedIn,
        responses={200: serializers.RetryFailedOut, **problems(404, 409, 415)},
        description="Redrive the dead letters: up to `limit` failed jobs of the queue that "
        "failed in [`since`, `until`) (both optional), oldest first, back to `waiting` with "
        "fresh attempts, in one transaction and one audit event listing them. A flow job "
        "is retried with its failed, cancelled or expired children, as a retry does. A "
        "failed job stays failed when an unfinished job holds its idempotency key, when a "
        "job it depends on has not completed, or when it is a flow child whose parent is "
        "already ready or running (the event lists them). Needs `retry`.",
    )
)
class QueueRetryFailedApi(FlashqApiView):
    operations = {"post": Operation.RETRY_FAILED}

    def post(self, request: Request, queue: str) -> Response:
        name = self.queue_name()
        self.authorize(name)
        params = _valid(serializers.RetryFailedIn, request.data)
        retried = services.jobs_retry_failed(
            queue_name=name,
            actor=self.actor(),
            since=params.get("since"),
            until=params.get("until"),
            limit=params["limit"],
        )
        return Response({"retried": retried})
