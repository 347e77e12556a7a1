"""Job-scoped operations: getJob, update, ack (single and batch), fail, progress,
cancel, retry. A job in a queue the token cannot see is a 404, never a 403."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from .. import selectors, services
from ..errors import JobNotFound
from . import batch, serializers
from .base import FlashqApiView
from .docs import problems
from .representations import job_detail


def _valid(serializer_class: type[serializers.StrictSerializer], data: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class JobApi(FlashqApiView):
    """``GET`` reads a job; ``PATCH`` replaces the data of a job not yet started."""

    actions = {"get": "getJob", "patch": "update"}

    def _detail(self, job_id: Any) -> Response:
        job = selectors.job_get(job_id=job_id)
        return Response(job_detail(job, self.principal, timezone.now()))

    @extend_schema(
        operation_id="getJob", responses={200: serializers.JobDetailOut, **problems(404)}
    )
    def get(self, request: Request, job_id: str) -> Response:
        job_uuid = self.job_id()
        queue = self.authorize_job("getJob", job_uuid)
        with self.audited(status=200, queue=queue) as note:
            note.job_ids = [job_uuid]
            response = self._detail(job_uuid)
        return response

    @extend_schema(
        operation_id="update",
        request=serializers.UpdateIn,
        responses={200: serializers.JobDetailOut, **problems(404, 409, 413, 415)},
        description="Replace `data` of a job that has not started yet (else 409).",
    )
    def patch(self, request: Request, job_id: str) -> Response:
        job_uuid = self.job_id()
        queue = self.authorize_job("update", job_uuid)
        params = _valid(serializers.UpdateIn, request.data)
        with self.audited(status=200, queue=queue) as note:
            note.job_ids = [job_uuid]
            services.job_update(job_id=job_uuid, data=params["data"])
        return self._detail(job_uuid)


class _LeasedJobApi(FlashqApiView):
    """Shared shape of ack, fail and progress: lease-checked, answered with the job."""

    verb: str
    body: type[serializers.StrictSerializer]

    def perform(self, job_id: Any, params: dict[str, Any]) -> None:
        raise NotImplementedError

    def post(self, request: Request, job_id: str) -> Response:
        job_uuid = self.job_id()
        queue = self.authorize_job(self.verb, job_uuid)
        params = _valid(self.body, request.data)
        with self.audited(status=200, queue=queue) as note:
            note.job_ids = [job_uuid]
            self.perform(job_uuid, params)
            job = selectors.job_get(job_id=job_uuid)
        return Response(job_detail(job, self.principal, timezone.now()))


_leased_responses: dict[Any, Any] = {200: serializers.JobDetailOut, **problems(404, 409, 413, 415)}


class JobAckApi(_LeasedJobApi):
    actions = {"post": "ack"}
    verb = "ack"
    body = serializers.AckIn

    def perform(self, job_id: Any, params: dict[str, Any]) -> None:
        services.job_ack(job_id=job_id, lease_id=params["lease_id"], result=params["result"])

    @extend_schema(
        operation_id="ack",
        request=serializers.AckIn,
        responses=_leased_responses,
        description="Complete a job. The lease must be current and unexpired (else 409).",
    )
    def post(self, request: Request, job_id: str) -> Response:
        return super().post(request, job_id)


class JobFailApi(_LeasedJobApi):
    actions = {"post": "fail"}
    verb = "fail"
    body = serializers.FailIn

    def perform(self, job_id: Any, params: dict[str, Any]) -> None:
        services.job_fail(
            job_id=job_id, lease_id=params["lease_id"], error=params["error"], retry=params["retry"]
        )

    @extend_schema(
        operation_id="fail",
        request=serializers.FailIn,
        responses=_leased_responses,
        description="Record a failed attempt: retried after the job's backoff, or `failed` "
        "when attempts are used up or `retry` is false.",
    )
    def post(self, request: Request, job_id: str) -> Response:
        return super().post(request, job_id)


class JobProgressApi(_LeasedJobApi):
    actions = {"post": "progress"}
    verb = "progress"
    body = serializers.ProgressIn

    def perform(self, job_id: Any, params: dict[str, Any]) -> None:
        services.job_progress(
            job_id=job_id,
            lease_id=params["lease_id"],
            progress=params["progress"],
            message=params["message"],
        )

    @extend_schema(
        operation_id="progress",
        request=serializers.ProgressIn,
        responses=_leased_responses,
        description="Report progress (0-100); also extends the lease by its length.",
    )
    def post(self, request: Request, job_id: str) -> Response:
        return super().post(request, job_id)


class _JobStateApi(FlashqApiView):
    verb: str

    def perform(self, job_id: Any) -> None:
        raise NotImplementedError

    def post(self, request: Request, job_id: str) -> Response:
        job_uuid = self.job_id()
        queue = self.authorize_job(self.verb, job_uuid)
        with self.audited(status=200, queue=queue) as note:
            note.job_ids = [job_uuid]
            self.perform(job_uuid)
            job = selectors.job_get(job_id=job_uuid)
        return Response(job_detail(job, self.principal, timezone.now()))


_state_responses: dict[Any, Any] = {200: serializers.JobDetailOut, **problems(404, 409)}


class JobCancelApi(_JobStateApi):
    actions = {"post": "cancel"}
    verb = "cancel"

    def perform(self, job_id: Any) -> None:
        services.job_cancel(job_id=job_id)

    @extend_schema(
        operation_id="cancel",
        request=None,
        responses=_state_responses,
        description="Cancel a waiting or active job.",
    )
    def post(self, request: Request, job_id: str) -> Response:
        return super().post(request, job_id)


class JobRetryApi(_JobStateApi):
    actions = {"post": "retry"}
    verb = "retry"

    def perform(self, job_id: Any) -> None:
        services.job_retry(job_id=job_id)

    @extend_schema(
        operation_id="retry",
        request=None,
        responses=_state_responses,
        description="Send a failed, cancelled or expired job back to waiting.",
    )
    def post(self, request: Request, job_id: str) -> Response:
        return super().post(request, job_id)


class JobAckBatchApi(FlashqApiView):
    actions = {"post": "ack"}

    @extend_schema(
        operation_id="ackBatch",
        request=serializers.AckBatchIn,
        responses={200: serializers.AckBatchOut, **problems(404, 409, 413, 415)},
        description="Complete up to 1000 jobs, all or nothing: if any lease is stale the "
        "answer is 409 naming each offending item, and no job is acked.",
    )
    def post(self, request: Request) -> Response:
        acks = batch.parse_ack_batch(request.data)
        queues = selectors.jobs_queue_names(job_ids=[ack.job_id for ack in acks])
        for ack in acks:
            queue = queues.get(ack.job_id)
            if queue is None or not self.principal.sees(queue):
                raise JobNotFound(f"No such job: {ack.job_id}.")
        for queue in sorted(set(queues.values())):
            self.authorize("ack", queue)
        single = next(iter(queues.values())) if len(set(queues.values())) == 1 else ""
        with self.audited(status=200, queue=single) as note:
            note.job_ids = [ack.job_id for ack in acks]
            note.details = {"count": len(acks)}
            services.jobs_ack(acks=acks)
        return Response({"acked": len(acks)})
