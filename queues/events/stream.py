"""An event stream: the job event log as Server-Sent Events, for one subscriber.

``stream_start`` (synchronous, at the request) decides where the stream begins: at
the subscriber's ``Last-Event-ID`` when the log still covers it, else now, with a
``reset`` first. ``event_stream`` (asynchronous, for the response) then reads the log
from there up to where the shared pump (``queues.events.pump``) stood when it joined,
and goes on from the pump's feed: every event once, in log order, no gap. Between its
reads it holds no database connection and no thread.

A stream only ever sends events of queues ``reaches`` allows; ``recheck`` is asked
again at every heartbeat (the token may have been revoked or its rules changed) and
ends the stream when it answers None. The data of an event is what the log holds (ids,
state, counts, an error code), never a payload, result, error text or subject."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError

from kernel.blocking import blocking

from ..eventmodels import EventKind, JobEvent
from ..models import Queue
from .log import Cursor, events_after, latest, pruned_through
from .pump import BATCH, PUMP, Subscriber

logger = logging.getLogger("flashq.events")

Reaches = Callable[[str], bool]
#: Who may read which queue now, asked at each heartbeat; None ends the stream.
Recheck = Callable[[], Reaches | None]

HEARTBEAT = ": heartbeat\n\n"


@dataclass(frozen=True)
class StreamStart:
    """Where a stream begins, and why it starts with ``reset`` (or None)."""

    cursor: Cursor
    reset: str | None
    resumed_from: str | None


def stream_start(last_event_id: str | None) -> StreamStart:
    """A cursor the log still covers resumes there. One it does not is reset to now:
    malformed (``invalid``), at or below what was pruned (``pruned``), or beyond
    anything the log has handed out (``unknown``: another server's, or made up)."""
    now = latest()
    if last_event_id is None:
        return StreamStart(now, None, None)
    cursor = Cursor.parse(last_event_id)
    if cursor is None:
        return StreamStart(now, "invalid", "invalid")
    resumed = str(cursor)
    if cursor <= pruned_through():
        return StreamStart(now, "pruned", resumed)
    if cursor > now:
        return StreamStart(now, "unknown", resumed)
    return StreamStart(cursor, None, resumed)


def event_data(event: JobEvent, queue: str) -> dict[str, object]:
    """What a subscriber is told of an event: ids, state and counts, nothing a job
    carries (its payload, result, error text, subject, progress message)."""
    return {
        "job_id": str(event.job_id),
        "queue": queue,
        "state": event.state,
        "attempts": event.attempts,
        "progress": event.progress,
        "error_code": event.error_code or None,
        "at": event.at.isoformat(),
    }


def event_frame(event: JobEvent, queue: str) -> str:
    body = json.dumps(event_data(event, queue), separators=(",", ":"))
    return f"id: {Cursor.of(event)}\nevent: {event.kind}\ndata: {body}\n\n"


def reset_frame(cursor: Cursor, reason: str) -> str:
    body = json.dumps({"reason": reason}, separators=(",", ":"))
    return f"id: {cursor}\nevent: {EventKind.RESET}\ndata: {body}\n\n"


async def event_stream(
    *, reaches: Reaches, start: StreamStart, recheck: Recheck
) -> AsyncGenerator[str, None]:
    """The stream's frames: ``retry`` once, an optional ``reset``, the catch-up, then
    the live feed with a heartbeat every EVENT_STREAM_HEARTBEAT_SECONDS."""
    loop = asyncio.get_running_loop()
    subscriber = Subscriber(loop, reaches)
    yield f"retry: {settings.EVENT_STREAM_RETRY_MS}\n\n"
    try:
        joined = await blocking(PUMP.join, subscriber)
        assert isinstance(joined, Cursor)
        last = start.cursor
        if start.reset is not None:
            yield reset_frame(last, start.reset)
        async for frame, cursor in _catch_up(subscriber, last, joined):
            last = cursor
            yield frame
        last = max(last, joined)
        beat = settings.EVENT_STREAM_HEARTBEAT_SECONDS
        next_beat = loop.time() + beat
        while True:
            behind = subscriber.behind_through
            if behind is not None:
                subscriber.behind_through = None
                last = max(last, behind)
                yield reset_frame(last, "behind")
            while subscriber.buffer:
                event = subscriber.buffer.popleft()
                cursor = Cursor.of(event)
                if cursor > last:
                    last = cursor
                    yield event_frame(event, PUMP.names.get(event.queue_id, ""))
            subscriber.wake.clear()
            wait = next_beat - loop.time()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(subscriber.wake.wait(), wait)
                continue
            now_reaches = await blocking(recheck)
            if now_reaches is None:
                return
            subscriber.forget(now_reaches)
            yield HEARTBEAT
            next_beat = loop.time() + beat
    except DatabaseError as exc:
        # The answer ends; the client reconnects with its Last-Event-ID and resumes.
        logger.warning("event stream: database unavailable: %s", type(exc).__name__)
    finally:
        PUMP.leave(subscriber)


async def _catch_up(
    subscriber: Subscriber, last: Cursor, joined: Cursor
) -> AsyncIterator[tuple[str, Cursor]]:
    """The events after ``last`` up to ``joined`` (the pump hands over the rest), read
    from the log a batch at a time, of the queues the subscriber may hear about."""
    names = PUMP.names
    queue_ids = [queue_id for queue_id, name in names.items() if subscriber.wants(name)]
    while last < joined:
        batch = await blocking(events_after, last, queue_ids=queue_ids, limit=BATCH)
        assert isinstance(batch, list)
        for event in batch:
            cursor = Cursor.of(event)
            if cursor > joined:
                return
            last = cursor
            yield event_frame(event, names.get(event.queue_id, "")), cursor
        if len(batch) < BATCH:
            return


def polled_stream(*, reaches: Reaches, start: StreamStart) -> Iterator[str]:
    """The same frames for a server without an event loop (WSGI: gunicorn's sync
    workers, runserver): the log polled in this thread for one heartbeat's time, then
    the answer ends and the client reconnects with its Last-Event-ID (``retry``), as
    from a long poll. It holds its thread meanwhile, as a waiting pull does."""
    yield f"retry: {settings.EVENT_STREAM_RETRY_MS}\n\n"
    if start.reset is not None:
        yield reset_frame(start.cursor, start.reset)
    last = start.cursor
    names: dict[int, str] = {}
    deadline = time.monotonic() + settings.EVENT_STREAM_HEARTBEAT_SECONDS
    while time.monotonic() < deadline:
        try:
            batch = events_after(last, limit=BATCH)
            if any(event.queue_id not in names for event in batch):
                names = dict(Queue.objects.values_list("id", "name"))
        except DatabaseError as exc:
            logger.warning("event stream: database unavailable: %s", type(exc).__name__)
            return
        for event in batch:
            last = Cursor.of(event)
            queue = names.get(event.queue_id)
            if queue is not None and reaches(queue):
                yield event_frame(event, queue)
        if len(batch) < BATCH:
            time.sleep(settings.EVENT_STREAM_POLL_MS / 1000)
    yield HEARTBEAT
