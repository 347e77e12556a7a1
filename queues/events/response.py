"""The answer that carries an event stream, for the API's route and the admin's: a
waiter slot taken for its whole life, and the stream that fits the server (async under
ASGI, a one-heartbeat poll under WSGI)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.db import connection
from django.http import HttpRequest, StreamingHttpResponse

from ..errors import TooManyStreams
from ..waitslots import wait_slot
from .stream import Reaches, Recheck, StreamStart, event_stream, polled_stream

Release = Callable[[], object]


class EventStreamResponse(StreamingHttpResponse):
    """A ``text/event-stream`` answer that calls ``on_close`` once it is closed (its
    stream ended, the client went away, or it was never sent)."""

    def __init__(self, stream: AsyncIterator[str] | Iterator[str], *, on_close: Release) -> None:
        super().__init__(stream, content_type="text/event-stream; charset=utf-8")
        self["Cache-Control"] = "no-cache"
        self["X-Accel-Buffering"] = "no"
        self._on_close: Release | None = on_close

    def close(self) -> None:
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()
        super().close()


def stream_slot(owner: str) -> Release:
    """A long-poll slot for ``owner`` (queues.waitslots), and how to give it back;
    TooManyStreams when this process or ``owner`` is at its cap."""
    slot = wait_slot(owner)
    if not slot.__enter__():
        slot.__exit__(None, None, None)
        raise TooManyStreams(settings.LONG_POLL_RETRY_AFTER_SECONDS)
    return partial(slot.__exit__, None, None, None)


def stream_response(
    request: HttpRequest,
    *,
    reaches: Reaches,
    start: StreamStart,
    recheck: Recheck,
    release: Release,
) -> EventStreamResponse:
    """The stream for ``request``'s server. Under ASGI the connection the request used
    is closed now (unless a test's transaction holds it): the stream reads through
    others, and only while it reads."""
    stream: AsyncIterator[str] | Iterator[str]
    if isinstance(request, ASGIRequest):
        stream = event_stream(reaches=reaches, start=start, recheck=recheck)
        if not connection.in_atomic_block:
            connection.close()
    else:
        stream = polled_stream(reaches=reaches, start=start)
    return EventStreamResponse(stream, on_close=release)
