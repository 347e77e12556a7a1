"""Queue-scoped operations: push, push batch, pull, getJobs, listQueues, stats and
clean (a queue's settings are in queue_settings_views). One view per route; each reads
parse -> authorize -> service -> render."""

from __future__ import annotations

import base64
import re
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema_view
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from kernel.problems import FieldError, InvalidInput
from security.access import Verb, pattern_matches

from .. import pulling, reads, services, waiting
from ..models import Queue
from . import batch, serializers
from .base import FlashqApiView
from .calls import ApiCall
from .docs import ACK_REPLAY, operation_schema, problems
from .operations import Operation
from .representations import job_detail, job_leased, job_summary, queue_summary
from .waitingbase import Parked, WaitingApiView

_CURSOR = re.compile(r"[A-Za-z0-9_-]{22}")


def _encode_cursor(job_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(job_id.bytes).decode().rstrip("=")


def _decode_cursor(cursor: str) -> uuid.UUID:
    """Any 22 characters of the URL-safe base64 alphabet are 16 bytes: a job id."""
    if not _CURSOR.fullmatch(cursor):
        raise InvalidInput(
            "The cursor is not one this API issued.",
            errors=[FieldError("/cursor", "is not a valid cursor")],
        )
    return uuid.UUID(bytes=base64.urlsafe_b64decode(cursor + "=="))


def push_one(call: ApiCall, body: Callable[[], Any]) -> tuple[dict[str, Any], int]:
    """A single push, for either view that serves it: the summary and its status (201
    created, 200 the unfinished job holding the key). ``body()`` parses the request,
    and is called only once the caller may push to the queue."""
    name = call.queue_name()
    call.authorize(name)
    spec = batch.parse_push(body())
    pushed = services.job_push(
        queue_name=name,
        spec=spec,
        owner=call.principal.key,
        actor=call.actor(),
        readable=call.readable,
    )
    return job_summary(pushed.job, name, timezone.now()), 201 if pushed.created else 200


@extend_schema_view(
    post=operation_schema(
        Operation.PUSH,
        request=serializers.PushIn,
        responses={
            201: serializers.JobSummaryOut,
            200: serializers.JobSummaryOut,
            **problems(409, 413, 415),
        },
        description="Push a job. 201 when created; 200 with the existing job when an "
        "unfinished job of the queue that this token's family pushed has the same `key`; "
        "409 `key_conflict` (naming no job) when another token's does. A card number in "
        "`data` (outside the queue's allow-list), `key`, `subject`, a tag or the queue "
        "name (a push creates its queue) is a 422 naming each path; nothing is stored.",
    ),
    get=operation_schema(
        Operation.GET_JOBS,
        parameters=[serializers.JobsQuery],
        responses={200: serializers.JobPageOut, **problems(404)},
        description="A page of the queue's jobs, oldest first. Pass `next_cursor` back as "
        "`cursor` for the next page; it is null on the last one. Jobs are masked as getJob "
        "masks them.",
    ),
)
class QueueJobsApi(FlashqApiView):
    """``POST`` pushes one job; ``GET`` pages through the queue's jobs."""

    operations = {"post": Operation.PUSH, "get": Operation.GET_JOBS}

    def post(self, request: Request, queue: str) -> Response:
        # Only a push that the plain view (pushview) hands over: see there.
        summary, status = push_one(self, lambda: request.data)
        return Response(summary, status=status)

    def get(self, request: Request, queue: str) -> Response:
        name = self.queue_name()
        self.authorize(name)
        query = serializers.JobsQuery(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        params = query.validated_data
        after = _decode_cursor(params["cursor"]) if params.get("cursor") else None
        page, more = reads.jobs_page_read(
            queue_name=name,
            state=params.get("state"),
            after=after,
            limit=params["limit"],
            actor=self.actor(),
        )
        now = timezone.now()
        return Response(
            {
                "jobs": [job_detail(job, self.principal, now) for job in page],
                "next_cursor": _encode_cursor(page[-1].id) if more else None,
            }
        )


@extend_schema_view(
    post=operation_schema(
        Operation.PUSH_BATCH,
        request=serializers.PushBatchIn,
        responses={201: serializers.PushBatchOut, **problems(409, 413, 415)},
        description="Push up to 1000 jobs, all or nothing; the response lists them in input "
        "order. A card number in any job's `data`, `key`, `subject` or tags is a 422 naming "
        "each path (`/jobs/3/key`), and no job is stored.",
    )
)
class QueueJobsBatchApi(FlashqApiView):
    operations = {"post": Operation.PUSH_BATCH}

    def post(self, request: Request, queue: str) -> Response:
        name = self.queue_name()
        self.authorize(name)
        specs = batch.parse_push_batch(request.data)
        results = services.jobs_push(
            queue_name=name,
            specs=specs,
            owner=self.principal.key,
            actor=self.actor(),
            readable=self.readable,
        )
        now = timezone.now()
        body = [
            {**job_summary(pushed.job, name, now), "created": pushed.created} for pushed in results
        ]
        return Response({"jobs": body}, status=201)


@extend_schema_view(
    post=operation_schema(
        Operation.PULL,
        request=serializers.PullIn,
        responses={200: serializers.PullOut, **problems(409, 413, 415)},
        parameters=[
            OpenApiParameter(
                "Retry-After",
                int,
                OpenApiParameter.HEADER,
                response=[200],
                description="Set when no job was ready and the pull would have waited, "
                "but the server already holds as many long polls as it allows (in all, "
                "or for this token's family): do not pull again before this many "
                "seconds.",
            )
        ],
        description="Lease up to `count` ready jobs, highest priority first. With `wait`, "
        "waits up to that many seconds for work. Each job carries a `lease_id` that ack, "
        "fail and progress must present before `lease_expires_at`. A worker may send its "
        "previous batch's acks in `ack`: they complete in the same transaction as this "
        "claim (one request per batch instead of two), all or nothing: a stale lease among "
        f"them is a 409 naming the item, and nothing is acked or leased. {ACK_REPLAY} Each "
        "app server process lets only "
        "so many pulls wait at once, and each token family only some of those: past that "
        "a pull answers at once with whatever is ready, and with `Retry-After` if that "
        "is nothing.",
    )
)
class QueuePullApi(WaitingApiView):
    operations = {"post": Operation.PULL}

    def post(
        self, request: Request, queue: str
    ) -> Response | Parked[pulling.Pulled | waiting.LastRound]:
        deadline = time.monotonic()
        name = self.queue_name()
        self.authorize(name)
        body = request.data
        acks = []
        if isinstance(body, dict) and "ack" in body:
            # Piggy-backed acks: parsed as a batch ack's items are (no serializer per
            # item); PullIn documents them but validates the rest.
            body = {key: value for key, value in body.items() if key != "ack"}
            acks = batch.parse_pull_acks(request.data["ack"])
            if acks and not self.principal.allows(Verb.ACK, name):
                raise PermissionDenied("This token may not ack on this queue.")
            self.audit_jobs([ack.job_id for ack in acks])
        params_in = serializers.PullIn(data=body)
        params_in.is_valid(raise_exception=True)
        params = params_in.validated_data
        spec = pulling.PullSpec(
            queue_name=name,
            count=params["count"],
            lease_seconds=params["lease"],
            owner=self.principal.key,
            actor=self.actor(),
        )
        wait_seconds = params["wait"]
        waiter = waiting.PullWait(spec, deadline=deadline + wait_seconds) if wait_seconds else None
        jobs = waiter.begin(acks=acks) if waiter else spec.begin(acks=acks)
        if jobs is not None:
            return self._render(name, jobs)
        assert waiter is not None  # only a pull that may wait finds nothing yet
        return Parked(
            wait=waiter.wait,
            render=lambda ended: self._render(name, waiter.finish(ended)),
            abandon=spec.abandon,
        )

    @staticmethod
    def _render(name: str, jobs: pulling.Pulled) -> Response:
        response = Response({"jobs": [job_leased(job, name) for job in jobs]})
        if jobs.retry_after_s is not None:
            response["Retry-After"] = str(jobs.retry_after_s)
        return response


@extend_schema_view(
    get=operation_schema(
        Operation.LIST_QUEUES,
        responses={200: serializers.QueueListOut, **problems()},
        description="The queues this token may use at least one verb on.",
    )
)
class QueueListApi(FlashqApiView):
    operations = {"get": Operation.LIST_QUEUES}

    def get(self, request: Request) -> Response:
        visible = reads.queues_read(visible=self.principal.sees, actor=self.actor())
        return Response({"queues": [queue_summary(queue) for queue in visible]})


@extend_schema_view(
    get=operation_schema(
        Operation.QUEUE_STATS,
        responses={200: serializers.QueueStatsOut, **problems(404)},
        description="Counts per state and the age of the oldest ready job. Needs `admin`.",
    )
)
class QueueStatsApi(FlashqApiView):
    operations = {"get": Operation.QUEUE_STATS}

    def get(self, request: Request, queue: str) -> Response:
        name = self.queue_name()
        self.authorize(name)
        queue_obj, stats = reads.queue_stats_read(queue_name=name, actor=self.actor())
        return Response({**queue_summary(queue_obj), **stats})


@extend_schema_view(
    post=operation_schema(
        Operation.CLEAN,
        request=serializers.CleanIn,
        responses={200: serializers.CleanOut, **problems(415)},
        description="Delete finished jobs (`state`, default completed) that finished at "
        "least `grace_ms` ago, oldest first, at most `limit` in one call, on every queue "
        "`{queue}` reaches: a name or a pattern with `*` (the guide's "
        "`clean('*', 30 days, 'completed')` is `POST /queues/*/clean` with `grace_ms` "
        "2592000000). Needs `clean` on each queue; queues this token may see but not "
        "clean are skipped and listed, queues under legal hold are left alone and listed.",
    )
)
class QueueCleanApi(FlashqApiView):
    operations = {"post": Operation.CLEAN}

    def post(self, request: Request, queue: str) -> Response:
        pattern = self.queue_pattern()
        params = serializers.CleanIn(data=request.data)
        params.is_valid(raise_exception=True)
        reached = [q for q in Queue.objects.order_by("name") if pattern_matches(pattern, q.name)]
        visible = [q for q in reached if self.principal.sees(q.name)]
        allowed = [q for q in visible if self.principal.allows(Verb.CLEAN, q.name)]
        skipped = [q.name for q in visible if q not in allowed]
        if skipped and not allowed:
            raise PermissionDenied("This token may not clean any queue this pattern reaches.")
        grace = timedelta(milliseconds=params.validated_data["grace_ms"])
        cleaned = services.jobs_clean(
            queues=allowed,
            states=[params.validated_data["state"]],
            finished_before_=timezone.now() - grace,
            limit=params.validated_data["limit"],
            actor=self.actor(),
            skipped=skipped,
        )
        return Response(
            {
                "deleted": cleaned.deleted,
                "total": cleaned.total,
                "skipped": skipped,
                "held": cleaned.held,
            }
        )
