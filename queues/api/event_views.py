"""GET /queues/{pattern}/events: the job events of the queues a pattern reaches, as
Server-Sent Events (queues.events.stream).

The route is an async view (queues.api.waitingbase, as the waiting pull's). What every
route does (address and token checks, rate limit, the operation's verb, problem+json
refusals, one audit event) is the same FlashqApiView run in a short-lived thread; it
answers with a streaming response over an async iterator, so an open stream holds no
thread and no database connection under ASGI, only its place in the process's event
pump and a long-poll slot of its token family (queues.waitslots), given back when the
stream ends. Under WSGI (a sync or threaded server) the same frames come from
``polled_stream``, one heartbeat long, and the client reconnects with its
Last-Event-ID."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.conf import settings
from django.http import HttpResponseBase
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema_view
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request

from kernel.clientip import address_allowed, client_ip
from security.authentication import AuthThrottled, TokenRefused, principal_for

from ..events.response import stream_response, stream_slot
from ..events.stream import Reaches
from ..events.subscribe import Reach, queue_names
from ..reads import events_stream_read
from .docs import operation_schema, problems
from .operations import Operation
from .waitingbase import WaitingApiView

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
class QueueEventsApi(WaitingApiView):
    operations = {"get": Operation.SUBSCRIBE_EVENTS}
    # Not HEAD: it would open a stream whose events nobody reads.
    http_method_names = ["get"]

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # EventSource asks for text/event-stream, which no renderer offers: a refusal
        # still answers in problem+json.
        return super().perform_content_negotiation(request, force=True)

    def get(self, request: Request, queue: str) -> HttpResponseBase:
        pattern = self.queue_pattern()
        reach = Reach(pattern, self.principal)
        if not reach.may_subscribe():
            raise PermissionDenied("This token may not getJobs on any queue this reaches.")
        release = stream_slot(self.principal.key)
        try:
            start = events_stream_read(
                pattern=pattern,
                reaches=reach,
                names=queue_names(),
                last_event_id=request.META.get("HTTP_LAST_EVENT_ID"),
                actor=self.actor(),
            )
        except BaseException:
            release()
            raise
        raw = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")[2].strip()
        recheck = partial(_recheck, raw, client_ip(request), pattern)
        return stream_response(
            request._request, reaches=reach, start=start, recheck=recheck, release=release
        )
