"""Queue-scoped operations: push, push batch, pull, getJobs, listQueues, stats, pause,
resume. One view per route; the logic lives in services and selectors."""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from contextlib import nullcontext
from typing import Any

from django.db import transaction
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from .. import selectors, services
from ..errors import FieldError, InvalidInput
from ..wakeup import Waiter
from . import batch, serializers
from .base import AuditNote, FlashqApiView
from .docs import problems
from .representations import job_detail, job_leased, job_summary, queue_summary


def _encode_cursor(job_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(job_id.bytes).decode().rstrip("=")


def _decode_cursor(cursor: str) -> uuid.UUID:
    try:
        return uuid.UUID(bytes=base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error) as exc:
        raise InvalidInput(
            "The cursor is not one this API issued.",
            errors=[FieldError("/cursor", "is not a valid cursor")],
        ) from exc


class QueueJobsApi(FlashqApiView):
    """``POST`` pushes one job; ``GET`` pages through the queue's jobs."""

    actions = {"post": "push", "get": "getJobs"}

    @extend_schema(
        operation_id="push",
        request=serializers.PushIn,
        responses={
            201: serializers.JobSummaryOut,
            200: serializers.JobSummaryOut,
            **problems(413, 415),
        },
        description="Push a job. 201 when created; 200 with the existing job when an "
        "unfinished job of the queue has the same `key`.",
    )
    def post(self, request: Request, queue: str) -> Response:
        name = self.queue_name()
        self.authorize("push", name)
        spec = batch.parse_push(request.data)
        with self.audited(status=201, queue=name) as note:
            pushed = services.job_push(queue_name=name, spec=spec)
            note.status = 201 if pushed.created else 200
            note.job_ids = [pushed.job.id]
            note.details = {"created": pushed.created}
        return Response(job_summary(pushed.job, name, timezone.now()), status=note.status)

    @extend_schema(
        operation_id="getJobs",
        parameters=[serializers.JobsQuery],
        responses={200: serializers.JobPageOut, **problems(404)},
        description="A page of the queue's jobs, oldest first. Pass `next_cursor` back as "
        "`cursor` for the next page; it is null on the last one.",
    )
    def get(self, request: Request, queue: str) -> Response:
        name = self.queue_name()
        self.authorize("getJobs", name)
        query = serializers.JobsQuery(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        params = query.validated_data
        after = _decode_cursor(params["cursor"]) if params.get("cursor") else None
        with self.audited(status=200, queue=name) as note:
            queue_obj = selectors.queue_get(name=name)
            jobs = selectors.jobs_for_queue(
                queue=queue_obj, state=params.get("state"), after=after, limit=params["limit"] + 1
            )
            page, more = jobs[: params["limit"]], len(jobs) > params["limit"]
            note.details = {"count": len(page)}
        now = timezone.now()
        return Response(
            {
                "jobs": [job_detail(job, self.principal, now) for job in page],
                "next_cursor": _encode_cursor(page[-1].id) if more else None,
            }
        )


class QueueJobsBatchApi(FlashqApiView):
    actions = {"post": "push"}

    @extend_schema(
        operation_id="pushBatch",
        request=serializers.PushBatchIn,
        responses={201: serializers.PushBatchOut, **problems(413, 415)},
        description="Push up to 1000 jobs, all or nothing; the response lists them in input order.",
    )
    def post(self, request: Request, queue: str) -> Response:
        name = self.queue_name()
        self.authorize("push", name)
        specs = batch.parse_push_batch(request.data)
        with self.audited(status=201, queue=name) as note:
            results = services.jobs_push(queue_name=name, specs=specs)
            note.job_ids = [pushed.job.id for pushed in results]
            note.details = {"count": len(results), "created": sum(p.created for p in results)}
        now = timezone.now()
        body = [
            {**job_summary(pushed.job, name, now), "created": pushed.created} for pushed in results
        ]
        return Response({"jobs": body}, status=201)


class QueuePullApi(FlashqApiView):
    actions = {"post": "pull"}

    @extend_schema(
        operation_id="pull",
        request=serializers.PullIn,
        responses={200: serializers.PullOut, **problems(413, 415)},
        description="Lease up to `count` ready jobs, highest priority first. With `wait`, "
        "waits up to that many seconds for work. Each job carries a `lease_id` that ack, "
        "fail and progress must present before `lease_expires_at`.",
    )
    def post(self, request: Request, queue: str) -> Response:
        name = self.queue_name()
        self.authorize("pull", name)
        params_in = serializers.PullIn(data=request.data)
        params_in.is_valid(raise_exception=True)
        params = params_in.validated_data
        deadline = time.monotonic() + params["wait"]
        waiter = Waiter(name) if params["wait"] > 0 else nullcontext(None)
        with waiter as listening:
            while True:
                with transaction.atomic():
                    # Re-read each round: a pause must stop a long poll too.
                    queue_obj = selectors.queue_find(name=name)
                    jobs = []
                    if queue_obj is not None:
                        jobs = services.jobs_pull(
                            queue=queue_obj,
                            count=params["count"],
                            lease_seconds=params["lease"],
                            owner=self.principal.key,
                        )
                    remaining = deadline - time.monotonic()
                    done = bool(jobs) or remaining <= 0 or listening is None
                    if done:
                        self.audit_ok(
                            AuditNote(status=200, queue=name, job_ids=[job.id for job in jobs])
                        )
                if done or listening is None:
                    break
                listening.wait(remaining)
        self.mark_audited()
        return Response({"jobs": [job_leased(job, name) for job in jobs]})


class QueueListApi(FlashqApiView):
    actions = {"get": "listQueues"}

    @extend_schema(
        operation_id="listQueues",
        responses={200: serializers.QueueListOut, **problems()},
        description="The queues this token may use at least one verb on.",
    )
    def get(self, request: Request) -> Response:
        with self.audited(status=200) as note:
            visible = [q for q in selectors.queues_list() if self.principal.sees(q.name)]
            note.details = {"count": len(visible)}
        return Response({"queues": [queue_summary(queue) for queue in visible]})


class QueueStatsApi(FlashqApiView):
    actions = {"get": "stats"}

    @extend_schema(
        operation_id="queueStats",
        responses={200: serializers.QueueStatsOut, **problems(404)},
        description="Counts per state and the age of the oldest ready job. Needs `admin`.",
    )
    def get(self, request: Request, queue: str) -> Response:
        name = self.queue_name()
        self.authorize("admin", name)
        with self.audited(status=200, queue=name):
            queue_obj = selectors.queue_get(name=name)
            stats = selectors.queue_stats(queue=queue_obj)
        return Response({**queue_summary(queue_obj), **stats})


class _QueuePauseBase(FlashqApiView):
    paused: bool

    def post(self, request: Request, queue: str) -> Response:
        name = self.queue_name()
        self.authorize("admin", name)
        with self.audited(status=200, queue=name):
            queue_obj = services.queue_set_paused(
                queue=selectors.queue_get(name=name), paused=self.paused
            )
        return Response(queue_summary(queue_obj))


_pause_schema: dict[str, Any] = {
    "request": None,
    "responses": {200: serializers.QueueOut, **problems(404)},
}


class QueuePauseApi(_QueuePauseBase):
    actions = {"post": "pause"}
    paused = True

    @extend_schema(operation_id="pause", description="Stop handing out jobs.", **_pause_schema)
    def post(self, request: Request, queue: str) -> Response:
        return super().post(request, queue)


class QueueResumeApi(_QueuePauseBase):
    actions = {"post": "resume"}
    paused = False

    @extend_schema(operation_id="resume", description="Hand out jobs again.", **_pause_schema)
    def post(self, request: Request, queue: str) -> Response:
        return super().post(request, queue)
