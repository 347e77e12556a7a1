"""An event stream's reads (queues.events.stream) run in the event loop's shared
threads and give their database connections back before the thread goes idle: a pool
thread between two streams' reads holds none (the server's connections, pooled or not,
are far fewer than its threads)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connections
from django.test import override_settings

from queues import services
from queues.events.pump import PUMP
from queues.events.stream import event_stream, stream_start
from queues.jobspec import JobSpec
from queues.models import JobEvent

from .eventstreams import log_readable
from .support import SETUP

pytestmark = pytest.mark.django_db(transaction=True)


def _open_connections() -> list[str]:
    return [conn.alias for conn in connections.all() if conn.connection is not None]


@override_settings(EVENT_STREAM_HEARTBEAT_SECONDS=0.3)
def test_a_streams_reads_leave_no_connection_open_in_the_pool_thread() -> None:
    JobEvent.objects.all().delete()
    start = stream_start(None)
    services.job_push(queue_name="jobs:a", spec=JobSpec(data={}), owner="t", actor=SETUP)
    log_readable()  # the stream's catch-up reads it

    async def stream_then_look() -> list[str]:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(1))  # every read in one thread
        frames = event_stream(reaches=lambda name: True, start=start, recheck=lambda: None)
        async for frame in frames:
            if "event: pushed" in frame:  # read from the log by the catch-up
                open_now = await loop.run_in_executor(None, _open_connections)
                await frames.aclose()
                return open_now
        raise AssertionError("the pushed event never came")

    assert asyncio.run(stream_then_look()) == []
    assert PUMP.listening() == 0
