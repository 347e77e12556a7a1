"""Job-scoped operations: getJob, waitJob, update, ack (single and batch), fail,
progress, cancel, retry. A job in a queue the token cannot see is a 404, never a 403."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema_view
from rest_framework.request import Request
from rest_framework.response import Response

from kernel import limits
from kernel.limits import MAX_BATCH

from .. import jobwait, reads, selectors, services, waiting
from ..errors import JobNotFound
from ..models import Job
from . import batch, serializers
from .base import FlashqApiView
from .docs import ACK_REPLAY, operation_schema, problems
from .operations import Operation
from .representations import job_detail, job_read
from .waitingbase import Parked, WaitingApiView


def _valid(serializer_class: type[serializers.StrictSerializer], data: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class _JobView(FlashqApiView):
    def render_job(self, job: Job) -> Response:
        return Response(job_detail(job, self.principal, timezone.now()))


@extend_schema_view(
    get=operation_schema(
        Operation.GET_JOB,
        responses={200: serializers.JobReadOut, **problems(404)},
        description="Read a job, with its links: `parent` (the flow job whose child it is) "
        "and `depends_on` (ids only, of jobs in queues where this token has `getJob`: a "
        "link to any other job is left out, as its id would name it). Without an explicit "
        "`reveal` grant on its queue, the queue's sensitive fields in `data` and `result`, "
        "and the free texts `error`, `errors[].error` and `progress_message`, are "
        "`[MASKED]` (an empty text stays empty); `error_code` and `errors[].code` are "
        "always shown.",
    ),
    patch=operation_schema(
        Operation.UPDATE,
        request=serializers.UpdateIn,
        responses={200: serializers.JobDetailOut, **problems(404, 409, 413, 415)},
        description="Change a waiting or delayed job (else 409): its `priority`, its "
        "`run_at` (a past time makes it ready now; `POST .../promote` does that too), and "
        "its `data` if it has not started yet. At least one of the three. A card number "
        "in `data` (outside the queue's allow-list) is a 422.",
    ),
)
class JobApi(_JobView):
    """``GET`` reads a job; ``PATCH`` changes a waiting job's data, priority or run_at."""

    operations = {"get": Operation.GET_JOB, "patch": Operation.UPDATE}

    def get(self, request: Request, job_id: str) -> Response:
        job_uuid = self.job_id()
        self.authorize_job(job_uuid)
        job = reads.job_read(job_id=job_uuid, actor=self.actor())
        parent, depends_on = selectors.job_links(job_id=job_uuid, readable=self.readable)
        return Response(
            job_read(job, self.principal, timezone.now(), parent=parent, depends_on=depends_on)
        )

    def patch(self, request: Request, job_id: str) -> Response:
        job_uuid = self.job_id()
        self.authorize_job(job_uuid)
        params = _valid(serializers.UpdateIn, request.data)
        job = services.job_update(
            job_id=job_uuid,
            data=params.get("data"),
            priority=params.get("priority"),
            run_at=params.get("run_at"),
            actor=self.actor(),
        )
        return self.render_job(job)


@extend_schema_view(
    get=operation_schema(
        Operation.WAIT_JOB,
        parameters=[
            serializers.JobWaitQuery,
            OpenApiParameter(
                "Retry-After",
                int,
                OpenApiParameter.HEADER,
                response=[200],
                description="Set when the job has not finished and the wait was answered "
                "at once because the server already holds as many long polls as it allows "
                "(in all, or for this token's family): do not ask again before this many "
                "seconds.",
            ),
        ],
        responses={200: serializers.JobWaitOut, **problems(404)},
        description="Wait for a job to finish: the answer comes as soon as it is "
        "completed, failed, cancelled or expired, with `finished: true`, or when "
        "`timeout_ms` has passed (default "
        f"{limits.DEFAULT_JOB_WAIT_MS}, at most {limits.MAX_JOB_WAIT_MS}) with its current "
        "state and `finished: false`. The job is shown and masked as getJob shows it; the "
        "same verb is needed. A wait counts toward the server's long-poll caps, as a "
        "pull's does: past them it answers at once, with `Retry-After` unless the job has "
        "finished. Safe to repeat.",
    )
)
class JobWaitApi(WaitingApiView):
    operations = {"get": Operation.WAIT_JOB}

    def get(self, request: Request, job_id: str) -> Parked[jobwait.Waited]:
        job_uuid = self.job_id()
        self.authorize_job(job_uuid)
        query = serializers.JobWaitQuery(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        principal, actor = self.principal, self.actor()

        def render(waited: jobwait.Waited) -> Response:
            parent, depends_on = selectors.job_links(job_id=job_uuid, readable=self.readable)
            body = job_read(waited.job, principal, waited.now, parent=parent, depends_on=depends_on)
            response = Response({**body, "finished": waited.finished})
            if waited.retry_after_s is not None:
                response["Retry-After"] = str(waited.retry_after_s)
            return response

        return Parked(
            wait=lambda: waiting.job_wait(
                job_id=job_uuid,
                timeout_ms=query.validated_data["timeout_ms"],
                owner=principal.key,
                actor=actor,
            ),
            render=render,
            abandon=lambda: jobwait.job_answer(job_uuid, actor),
        )


_leased_responses: dict[Any, Any] = {200: serializers.JobDetailOut, **problems(404, 409, 413, 415)}


@extend_schema_view(
    post=operation_schema(
        Operation.ACK,
        request=serializers.AckIn,
        responses=_leased_responses,
        description="Complete a job. The lease must be current and unexpired (else 409); "
        "a `result` over MAX_JOB_BYTES is a 413 and the job stays active. Only the token "
        "family that pulled the job may ack it: anyone else gets 409 even with the right "
        f"`lease_id`. {ACK_REPLAY}",
    )
)
class JobAckApi(_JobView):
    operations = {"post": Operation.ACK}

    def post(self, request: Request, job_id: str) -> Response:
        job_uuid = self.job_id()
        self.authorize_job(job_uuid)
        params = _valid(serializers.AckIn, request.data)
        job = services.job_ack(
            job_id=job_uuid,
            lease_id=params["lease_id"],
            owner=self.principal.key,
            result=params["result"],
            actor=self.actor(),
        )
        return self.render_job(job)


@extend_schema_view(
    post=operation_schema(
        Operation.FAIL,
        request=serializers.FailIn,
        responses=_leased_responses,
        description="Record a failed attempt: retried after the job's backoff, or `failed` "
        "when attempts are used up or `retry` is false. `code` is shown to every reader "
        "of the job; `error` only to tokens with `reveal` (else `[MASKED]`). A card "
        "number in `error` or `code` is a 422 naming the field, and nothing is recorded.",
    )
)
class JobFailApi(_JobView):
    operations = {"post": Operation.FAIL}

    def post(self, request: Request, job_id: str) -> Response:
        job_uuid = self.job_id()
        self.authorize_job(job_uuid)
        params = _valid(serializers.FailIn, request.data)
        job = services.job_fail(
            job_id=job_uuid,
            lease_id=params["lease_id"],
            owner=self.principal.key,
            error=params["error"],
            code=params.get("code", ""),
            retry=params["retry"],
            delay_ms=params.get("delay"),
            actor=self.actor(),
        )
        return self.render_job(job)


@extend_schema_view(
    post=operation_schema(
        Operation.PROGRESS,
        request=serializers.ProgressIn,
        responses=_leased_responses,
        description="Report progress (0-100); also extends the lease by its length, but "
        "never past the job's `deadline_at` (its `timeout`): from then on it is a 409. The "
        "`message` is shown as `[MASKED]` without `reveal`; a card number in it is a 422 "
        "naming `/message`, and nothing is recorded.",
    )
)
class JobProgressApi(_JobView):
    operations = {"post": Operation.PROGRESS}

    def post(self, request: Request, job_id: str) -> Response:
        job_uuid = self.job_id()
        self.authorize_job(job_uuid)
        params = _valid(serializers.ProgressIn, request.data)
        job = services.job_progress(
            job_id=job_uuid,
            lease_id=params["lease_id"],
            owner=self.principal.key,
            progress=params["progress"],
            message=params["message"],
            actor=self.actor(),
        )
        return self.render_job(job)


_state_responses: dict[Any, Any] = {200: serializers.JobDetailOut, **problems(404, 409)}


@extend_schema_view(
    post=operation_schema(
        Operation.CANCEL,
        request=None,
        responses=_state_responses,
        description="Cancel a waiting or active job.",
    )
)
class JobCancelApi(_JobView):
    operations = {"post": Operation.CANCEL}

    def post(self, request: Request, job_id: str) -> Response:
        job_uuid = self.job_id()
        self.authorize_job(job_uuid)
        return self.render_job(services.job_cancel(job_id=job_uuid, actor=self.actor()))


@extend_schema_view(
    post=operation_schema(
        Operation.RETRY,
        request=None,
        responses=_state_responses,
        description="Send a failed, cancelled or expired job back to waiting with fresh "
        "attempts. A flow job's failed, cancelled or expired children are retried with it, "
        "every level down (the completed ones are kept, not run again), and it waits in "
        "`waiting-children` while any is unfinished. A completed job is run again, alone: "
        "back to waiting with its attempts and error history kept (`max_attempts` raised "
        "to give it at least one more attempt), its result kept until the new run "
        "replaces it. 409 for a job in any other state, for one whose dependency has not "
        "completed (retry that first), for a flow child whose parent is already ready or "
        "running (it no longer waits for its children: retry the parent once it has "
        "finished), and for a job whose key an unfinished job of the queue now holds.",
    )
)
class JobRetryApi(_JobView):
    operations = {"post": Operation.RETRY}

    def post(self, request: Request, job_id: str) -> Response:
        job_uuid = self.job_id()
        self.authorize_job(job_uuid)
        return self.render_job(services.job_retry(job_id=job_uuid, actor=self.actor()))


@extend_schema_view(
    post=operation_schema(
        Operation.ACK_BATCH,
        request=serializers.AckBatchIn,
        responses={200: serializers.AckBatchOut, **problems(404, 409, 413, 415)},
        description=f"Complete up to {MAX_BATCH} jobs, all or nothing: if any lease is stale "
        "the answer is 409 naming each offending item, and no job is acked. Each job id may "
        "appear once (a repeat is a 400); a `result` over MAX_JOB_BYTES is a 413, and so is "
        "a body over MAX_ACK_BATCH_BYTES (2 MiB: it is read before the token's rights on "
        "the jobs' queues can be checked). A repeated item counts as acked (the answer "
        f"is the same as the first time). {ACK_REPLAY}",
    )
)
class JobAckBatchApi(FlashqApiView):
    operations = {"post": Operation.ACK_BATCH}

    @property
    def max_body_bytes(self) -> int:
        return int(settings.MAX_ACK_BATCH_BYTES)

    def post(self, request: Request) -> Response:
        acks = batch.parse_ack_batch(request.data)
        self.audit_jobs([ack.job_id for ack in acks])
        self._authorize_all([ack.job_id for ack in acks])
        services.jobs_ack(acks=acks, owner=self.principal.key, actor=self.actor())
        return Response({"acked": len(acks)})

    def _authorize_all(self, job_ids: list[uuid.UUID]) -> None:
        queues = selectors.jobs_queue_names(job_ids=job_ids)
        for job_id in job_ids:
            queue = queues.get(job_id)
            if queue is None or not self.principal.sees(queue):
                raise JobNotFound(f"No such job: {job_id}.")
        for queue in sorted(set(queues.values())):
            self.authorize(queue)
