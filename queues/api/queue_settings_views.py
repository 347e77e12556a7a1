"""A queue's settings: pause and resume, setRateLimit, setConcurrency,
setGroupConcurrency and setSchema with their removals (each needs ``admin`` on the
queue). One view per route; each reads parse -> authorize -> service -> render."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_view
from rest_framework.request import Request
from rest_framework.response import Response

from .. import services
from . import serializers
from .base import FlashqApiView
from .docs import operation_schema, problems
from .operations import Operation
from .representations import queue_summary


class _QueuePauseBase(FlashqApiView):
    paused: bool

    def post(self, request: Request, queue: str) -> Response:
        name = self.queue_name()
        self.authorize(name)
        queue_obj = services.queue_set_paused(name=name, paused=self.paused, actor=self.actor())
        return Response(queue_summary(queue_obj))


_pause_schema: dict[str, Any] = {
    "request": None,
    "responses": {200: serializers.QueueOut, **problems(404)},
}


@extend_schema_view(
    post=operation_schema(
        Operation.PAUSE,
        description="Stop handing out jobs (on every app server within "
        "QUEUE_CACHE_SECONDS, 1 s by default).",
        **_pause_schema,
    )
)
class QueuePauseApi(_QueuePauseBase):
    operations = {"post": Operation.PAUSE}
    paused = True


@extend_schema_view(
    post=operation_schema(Operation.RESUME, description="Hand out jobs again.", **_pause_schema)
)
class QueueResumeApi(_QueuePauseBase):
    operations = {"post": Operation.RESUME}
    paused = False


@extend_schema_view(
    put=operation_schema(
        Operation.SET_RATE_LIMIT,
        request=serializers.RateLimitIn,
        responses={200: serializers.QueueOut, **problems(415)},
        description="setRateLimit: pull hands out at most `max` jobs per `duration_ms`, in "
        "total across app servers (a pull for 100 when 10 remain gets 10). The budget "
        "refills continuously (GCRA): a full burst of `max`, then one job every "
        "`duration_ms / max`, so any window of one `duration_ms` sees at most 2 x `max` - 1. "
        "Creates the queue if needed. Needs `admin`.",
    ),
    delete=operation_schema(
        Operation.REMOVE_RATE_LIMIT,
        request=None,
        responses={200: serializers.QueueOut, **problems()},
        description="Remove the queue's rate limit. Needs `admin`.",
    ),
)
class QueueRateLimitApi(FlashqApiView):
    operations = {"put": Operation.SET_RATE_LIMIT, "delete": Operation.REMOVE_RATE_LIMIT}

    def put(self, request: Request, queue: str) -> Response:
        name = self.queue_name()
        self.authorize(name)
        params = serializers.RateLimitIn(data=request.data)
        params.is_valid(raise_exception=True)
        queue_obj = services.queue_set_rate_limit(
            name=name,
            max_jobs=params.validated_data["max"],
            duration_ms=params.validated_data["duration_ms"],
            actor=self.actor(),
        )
        return Response(queue_summary(queue_obj))

    def delete(self, request: Request, queue: str) -> Response:
        name = self.queue_name()
        self.authorize(name)
        queue_obj = services.queue_set_rate_limit(
            name=name, max_jobs=None, duration_ms=None, actor=self.actor()
        )
        return Response(queue_summary(queue_obj))


@extend_schema_view(
    put=operation_schema(
        Operation.SET_CONCURRENCY,
        request=serializers.ConcurrencyIn,
        responses={200: serializers.QueueOut, **problems(415)},
        description="At most `max` jobs of the queue active at once, across app servers; "
        "pull hands out only what fits. Creates the queue if needed. Needs `admin`.",
    ),
    delete=operation_schema(
        Operation.REMOVE_CONCURRENCY,
        request=None,
        responses={200: serializers.QueueOut, **problems()},
        description="Remove the queue's concurrency limit. Needs `admin`.",
    ),
)
class QueueConcurrencyApi(FlashqApiView):
    operations = {"put": Operation.SET_CONCURRENCY, "delete": Operation.REMOVE_CONCURRENCY}

    def put(self, request: Request, queue: str) -> Response:
        name = self.queue_name()
        self.authorize(name)
        params = serializers.ConcurrencyIn(data=request.data)
        params.is_valid(raise_exception=True)
        queue_obj = services.queue_set_concurrency(
            name=name, max_active=params.validated_data["max"], actor=self.actor()
        )
        return Response(queue_summary(queue_obj))

    def delete(self, request: Request, queue: str) -> Response:
        name = self.queue_name()
        self.authorize(name)
        queue_obj = services.queue_set_concurrency(name=name, max_active=None, actor=self.actor())
        return Response(queue_summary(queue_obj))


@extend_schema_view(
    put=operation_schema(
        Operation.SET_GROUP_CONCURRENCY,
        request=serializers.GroupConcurrencyIn,
        responses={200: serializers.QueueOut, **problems(415)},
        description="At most `max` jobs of each group (`group` on push) active at once "
        "(default 1), FIFO within a group by priority then run time; other groups' jobs "
        "are handed out meanwhile. Jobs already active stay so when it is lowered. "
        "Creates the queue if needed. Needs `admin`.",
    ),
    delete=operation_schema(
        Operation.REMOVE_GROUP_CONCURRENCY,
        request=None,
        responses={200: serializers.QueueOut, **problems()},
        description="Put the queue's group concurrency back to 1. Needs `admin`.",
    ),
)
class QueueGroupConcurrencyApi(FlashqApiView):
    operations = {
        "put": Operation.SET_GROUP_CONCURRENCY,
        "delete": Operation.REMOVE_GROUP_CONCURRENCY,
    }

    def put(self, request: Request, queue: str) -> Response:
        name = self.queue_name()
        self.authorize(name)
        params = serializers.GroupConcurrencyIn(data=request.data)
        params.is_valid(raise_exception=True)
        queue_obj = services.queue_set_group_concurrency(
            name=name, max_active=params.validated_data["max"], actor=self.actor()
        )
        return Response(queue_summary(queue_obj))

    def delete(self, request: Request, queue: str) -> Response:
        name = self.queue_name()
        self.authorize(name)
        queue_obj = services.queue_set_group_concurrency(
            name=name, max_active=None, actor=self.actor()
        )
        return Response(queue_summary(queue_obj))


@extend_schema_view(
    put=operation_schema(
        Operation.SET_SCHEMA,
        request=serializers.SchemaIn,
        responses={200: serializers.QueueOut, **problems(415)},
        description="Set the JSON Schema (2020-12) every job's data must satisfy: push and "
        "update are then validated against it (422 listing every failing path). Formats "
        "are asserted; only local `$ref`s are allowed (a schema naming a URL is refused). "
        "Creates the queue if needed. Needs `admin`.",
    ),
    delete=operation_schema(
        Operation.REMOVE_SCHEMA,
        request=None,
        responses={200: serializers.QueueOut, **problems()},
        description="Remove the queue's schema. Needs `admin`.",
    ),
)
class QueueSchemaApi(FlashqApiView):
    operations = {"put": Operation.SET_SCHEMA, "delete": Operation.REMOVE_SCHEMA}

    def put(self, request: Request, queue: str) -> Response:
        name = self.queue_name()
        self.authorize(name)
        params = serializers.SchemaIn(data=request.data)
        params.is_valid(raise_exception=True)
        queue_obj = services.queue_set_schema(
            name=name, schema=params.validated_data["schema"], actor=self.actor()
        )
        return Response(queue_summary(queue_obj))

    def delete(self, request: Request, queue: str) -> Response:
        name = self.queue_name()
        self.authorize(name)
        queue_obj = services.queue_set_schema(name=name, schema=None, actor=self.actor())
        return Response(queue_summary(queue_obj))
