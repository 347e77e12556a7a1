"""A queue's schedules (repeatable jobs): put (create or replace), get, list, delete,
pause, resume and trigger, each needing the ``schedule`` verb on the queue (put and
trigger make jobs, so they need ``push`` too). One view
per route; each reads parse -> authorize -> service -> render. The template's data is
shown as getJob shows a job's: the queue's sensitive fields masked without ``reveal``."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema_view
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from security.access import Principal, Verb
from security.masking import masked

from .. import reads, services
from ..models import Schedule
from ..schedulespec import parse_schedule_spec
from . import serializers
from .docs import operation_schema, problems
from .named import NamedItemView
from .operations import Operation
from .representations import iso, job_summary


def schedule_detail(schedule: Schedule, principal: Principal) -> dict[str, Any]:
    queue = schedule.queue
    reveal = principal.allows(Verb.REVEAL, queue.name)
    return {
        "name": schedule.name,
        "queue": queue.name,
        "cron": schedule.cron or None,
        "every_ms": schedule.every_ms,
        "timezone": schedule.time_zone,
        "data": masked(schedule.data, () if reveal else (queue.sensitive_fields or ())),
        "priority": schedule.priority,
        "max_attempts": schedule.max_attempts,
        "backoff": schedule.backoff,
        "timeout": schedule.timeout_ms,
        "tags": schedule.tags,
        "subject": schedule.subject,
        "start_at": iso(schedule.start_at),
        "end_at": iso(schedule.end_at),
        "catch_up": schedule.catch_up,
        "max_catch_up": schedule.max_catch_up,
        "paused": schedule.paused,
        "next_run_at": iso(schedule.next_run_at),
        "last_run_at": iso(schedule.last_run_at),
        "last_job_id": None if schedule.last_job_id is None else str(schedule.last_job_id),
        "created_at": iso(schedule.created_at),
        "updated_at": iso(schedule.updated_at),
    }


class _ScheduleView(NamedItemView):
    item = "schedule"

    def schedule_name(self) -> str:
        return self.item_name()

    def authorize_push(self, queue_name: str) -> None:
        """PUT and trigger make jobs: they need ``push`` on the queue as well as
        ``schedule``, so ``schedule`` alone cannot push where push is denied."""
        self.authorize(queue_name)
        if not self.principal.allows(Verb.PUSH, queue_name):
            raise PermissionDenied("This token may not push on this queue.")

    def render(self, schedule: Schedule, status: int = 200) -> Response:
        return Response(schedule_detail(schedule, self.principal), status=status)


_one: dict[Any, Any] = {200: serializers.ScheduleOut, **problems(404)}


@extend_schema_view(
    get=operation_schema(
        Operation.LIST_SCHEDULES,
        responses={200: serializers.ScheduleListOut, **problems()},
        description="The queue's schedules by name (none for a queue not yet made). "
        "Needs `schedule`.",
    )
)
class ScheduleListApi(_ScheduleView):
    operations = {"get": Operation.LIST_SCHEDULES}

    def get(self, request: Request, queue: str) -> Response:
        name = self.queue_name()
        self.authorize(name)
        schedules = reads.schedules_read(queue_name=name, actor=self.actor())
        return Response({"schedules": [schedule_detail(s, self.principal) for s in schedules]})


@extend_schema_view(
    put=operation_schema(
        Operation.PUT_SCHEDULE,
        request=serializers.ScheduleIn,
        responses={
            201: serializers.ScheduleOut,
            200: serializers.ScheduleOut,
            **problems(413, 415),
        },
        description="Create (201) or replace (200) a repeatable job: `cron` (5 fields, or 6 "
        "with seconds first, read in `timezone`) or `every_ms`, and the template of the "
        "job each tick pushes. Each tick makes exactly one job, keyed "
        "`schedule:<name>:<tick in UTC>`, pushed as this token's family's; a tick that "
        "finds no live token left in that family pushes nothing and pauses the "
        "schedule (`owner_revoked`), as does a template that stopped fitting its queue. "
        "A replace never fires a tick already fired, and keeps a due tick not yet fired. "
        "An invalid cron, time zone (at most 64 characters) or template field, or an "
        "unknown field, is a 400 naming it; data failing the queue's schema or holding a "
        "card number is a 422; nothing is changed. Creates the queue if needed. Needs "
        "`schedule` and `push` (403 otherwise).",
    ),
    get=operation_schema(
        Operation.GET_SCHEDULE,
        responses=_one,
        description="Read a schedule, with its `next_run_at`, `last_run_at` and "
        "`last_job_id`. Needs `schedule`.",
    ),
    delete=operation_schema(
        Operation.DELETE_SCHEDULE,
        request=serializers.ReasonIn,
        responses={204: None, **problems(404, 415)},
        description="Delete a schedule (its jobs stay). Optional `reason`, kept in the "
        "audit event. Needs `schedule`.",
    ),
)
class ScheduleApi(_ScheduleView):
    operations = {
        "put": Operation.PUT_SCHEDULE,
        "get": Operation.GET_SCHEDULE,
        "delete": Operation.DELETE_SCHEDULE,
    }

    def put(self, request: Request, queue: str, name: str) -> Response:
        queue_name = self.queue_name()
        schedule_name = self.schedule_name()
        self.authorize_push(queue_name)
        spec = parse_schedule_spec(request.data)
        schedule, created = services.schedule_save(
            queue_name=queue_name,
            name=schedule_name,
            spec=spec,
            owner=self.principal.key,
            actor=self.actor(),
        )
        return self.render(schedule, 201 if created else 200)

    def get(self, request: Request, queue: str, name: str) -> Response:
        queue_name = self.queue_name()
        schedule_name = self.schedule_name()
        self.authorize(queue_name)
        return self.render(
            reads.schedule_read(queue_name=queue_name, name=schedule_name, actor=self.actor())
        )

    def delete(self, request: Request, queue: str, name: str) -> Response:
        queue_name = self.queue_name()
        schedule_name = self.schedule_name()
        self.authorize(queue_name)
        services.schedule_delete(
            queue_name=queue_name, name=schedule_name, actor=self.actor(), reason=self.reason()
        )
        return Response(status=204)


class _ScheduleActionApi(_ScheduleView):
    def post(self, request: Request, queue: str, name: str) -> Response:
        queue_name = self.queue_name()
        schedule_name = self.schedule_name()
        if self.operation is Operation.TRIGGER_SCHEDULE:
            self.authorize_push(queue_name)
        else:
            self.authorize(queue_name)
        return self.act(queue_name, schedule_name, self.reason())

    def act(self, queue_name: str, name: str, reason: str) -> Response:
        raise NotImplementedError


@extend_schema_view(
    post=operation_schema(
        Operation.PAUSE_SCHEDULE,
        request=serializers.ReasonIn,
        responses={**_one, **problems(404, 415)},
        description="Stop firing the schedule. Optional `reason`. Needs `schedule`.",
    )
)
class SchedulePauseApi(_ScheduleActionApi):
    operations = {"post": Operation.PAUSE_SCHEDULE}

    def act(self, queue_name: str, name: str, reason: str) -> Response:
        return self.render(
            services.schedule_pause(
                queue_name=queue_name, name=name, actor=self.actor(), reason=reason
            )
        )


@extend_schema_view(
    post=operation_schema(
        Operation.RESUME_SCHEDULE,
        request=serializers.ReasonIn,
        responses={**_one, **problems(404, 415)},
        description="Fire a paused schedule again from its first tick after now; ticks that "
        "fell due while it was paused are not fired. Resuming a schedule that is not "
        "paused changes nothing (still 200). Optional `reason`. Needs `schedule`.",
    )
)
class ScheduleResumeApi(_ScheduleActionApi):
    operations = {"post": Operation.RESUME_SCHEDULE}

    def act(self, queue_name: str, name: str, reason: str) -> Response:
        return self.render(
            services.schedule_resume(
                queue_name=queue_name, name=name, actor=self.actor(), reason=reason
            )
        )


@extend_schema_view(
    post=operation_schema(
        Operation.TRIGGER_SCHEDULE,
        request=serializers.ReasonIn,
        responses={201: serializers.JobSummaryOut, **problems(404, 413, 415)},
        description="Push one job from the template now (even when paused); `next_run_at` "
        "does not move, and the job is the schedule's owner's: 403 `owner_revoked` when no "
        "live token is left in that family (a PUT by a live token takes it over). A "
        "template that no longer fits the queue's schema is a 422. "
        "Optional `reason`. Needs `schedule` and `push` (403 otherwise).",
    )
)
class ScheduleTriggerApi(_ScheduleActionApi):
    operations = {"post": Operation.TRIGGER_SCHEDULE}

    def act(self, queue_name: str, name: str, reason: str) -> Response:
        job = services.schedule_trigger(
            queue_name=queue_name, name=name, actor=self.actor(), reason=reason
        )
        return Response(job_summary(job, queue_name, timezone.now()), status=201)
