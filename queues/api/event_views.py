"""GET /queues/{pattern}/events: the job events of the queues a pattern reaches, as
Server-Sent Events (queues.events.stream).

The route is an async view. What every route does (address and token checks, rate
limit, the operation's verb, problem+json refusals, one audit event) is the same
FlashqApiView run in a worker thread; it answers with a streaming response over an
async iterator, so an open stream holds no thread and no database connection under
ASGI, only its place in the process's event pump and a long-poll slot of its token
family (queues.waitslots), given back when the stream ends. Under WSGI (gunicorn's
sync workers, runserver) the same frames come from ``polled_stream``, one heartbeat
long, and the client reconnects with its Last-Event-ID."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.db import connection
from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema_view
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request

from kernel.clientip import address_allowed, client_ip
from security.authentication import AuthThrottled, TokenRefused, principal_for

from ..errors import TooManyStreams
from ..events.stream import Reaches, event_stream, polled_stream
from ..events.subscribe import Reach, queue_names, subscription_open
from ..waitslots import wait_slot
from .base import FlashqApiView
from .docs import operation_schema, problems
from .operations import Operation

EVENT_KINDS = (
    "pushed, waiting, active, progress, completed, failed, retried, cancelled, expired, removed"
)

_DESCRIPTION = (
    "Server-Sent Events (`text/event-stream`) of the jobs of every queue `{queue}` reaches "
    "(a name, or a pattern with `*`) where this token has `getJobs`; events of other "
    "queues are never sent. Each event has `id: <txid>-<n>`, `event: <kind>` (one of "
    f"{EVENT_KINDS}) and `data:` a JSON object: `job_id`, `queue`, `state`, `attempts`, "
    "`progress`, `error_code` (or null) and `at` (ISO 8601). Never a payload, result, "
    "error text, subject or progress message. Send the last id back in `Last-Event-ID` to "
    "resume: the missed events follow, once each. An id the event log no longer covers "
    '(pruned, malformed or unknown) gets `event: reset` (`data: {"reason": ...}`) and the '
    "stream goes on from now; so does a subscriber that falls too far behind "
    "(`reason: behind`). A comment line (`: heartbeat`) comes every "
    "EVENT_STREAM_HEARTBEAT_SECONDS (15 s); the token is checked again then, and the "
    "stream ends once it is revoked, expired or no longer allowed. An open stream counts "
    "toward the token family's long-poll cap: past it, 503 with `Retry-After`."
)


class EventStreamResponse(StreamingHttpResponse):
    """A ``text/event-stream`` answer that calls ``on_close`` once it is closed (its
    stream ended, the client went away, or it was never sent)."""

    def __init__(
        self, stream: AsyncIterator[str] | Iterator[str], *, on_close: Callable[[], object]
    ) -> None:
        super().__init__(stream, content_type="text/event-stream; charset=utf-8")
        self["Cache-Control"] = "no-cache"
        self["X-Accel-Buffering"] = "no"
        self._on_close: Callable[[], object] | None = on_close

    def close(self) -> None:
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()
        super().close()


def _recheck(raw: str, ip: str | None, pattern: str) -> Reaches | None:
    """The stream's queues under the token as it is now; None once it may read none."""
    try:
        principal = principal_for(raw, ip=ip)
    except (TokenRefused, AuthThrottled):
        return None
    if not address_allowed(ip, tuple(settings.ALLOWED_CIDRS), principal.networks):
        return None
    reach = Reach(pattern, principal)
    return reach if reach.may_subscribe() else None


def _opened(view: Callable[..., HttpResponseBase], request: HttpRequest, **kwargs: Any) -> Any:
    """The synchronous part, in a worker thread; the stream's connection is given back
    before the stream starts (unless a test's transaction holds it)."""
    response = view(request, **kwargs)
    if response.streaming and not connection.in_atomic_block:
        connection.close()
    return response


@extend_schema_view(
    get=operation_schema(
        Operation.SUBSCRIBE_EVENTS,
        parameters=[
            OpenApiParameter(
                "Last-Event-ID",
                str,
                OpenApiParameter.HEADER,
                description="The `id` of the last event received: the stream resumes after it.",
            )
        ],
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                response=str,
                description="The event stream (see the operation's description).",
            ),
            **problems(),
        },
        description=_DESCRIPTION,
    )
)
class QueueEventsApi(FlashqApiView):
    operations = {"get": Operation.SUBSCRIBE_EVENTS}

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # EventSource asks for text/event-stream, which no renderer offers: a refusal
        # still answers in problem+json.
        return super().perform_content_negotiation(request, force=True)

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        sync_view = super().as_view(**initkwargs)

        async def view(request: HttpRequest, **kwargs: Any) -> Any:
            return await sync_to_async(_opened)(sync_view, request, **kwargs)

        view.view_class = cls  # type: ignore[attr-defined]
        view.cls = cls  # type: ignore[attr-defined]
        view.initkwargs = initkwargs  # type: ignore[attr-defined]
        view.csrf_exempt = True  # type: ignore[attr-defined]
        return view

    def get(self, request: Request, queue: str) -> HttpResponseBase:
        pattern = self.queue_pattern()
        reach = Reach(pattern, self.principal)
        if not reach.may_subscribe():
            raise PermissionDenied("This token may not getJobs on any queue this reaches.")
        slot = wait_slot(self.principal.key)
        if not slot.__enter__():
            slot.__exit__(None, None, None)
            raise TooManyStreams(settings.LONG_POLL_RETRY_AFTER_SECONDS)
        try:
            start = subscription_open(
                reach=reach,
                names=queue_names(),
                last_event_id=request.META.get("HTTP_LAST_EVENT_ID"),
                actor=self.actor(),
            )
        except BaseException:
            slot.__exit__(None, None, None)
            raise
        raw = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")[2].strip()
        recheck = partial(_recheck, raw, client_ip(request), pattern)
        stream: AsyncIterator[str] | Iterator[str]
        if isinstance(request._request, ASGIRequest):
            stream = event_stream(reaches=reach, start=start, recheck=recheck)
        else:
            stream = polled_stream(reaches=reach, start=start)
        return EventStreamResponse(stream, on_close=partial(slot.__exit__, None, None, None))
