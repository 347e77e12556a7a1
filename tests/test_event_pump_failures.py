"""The event pump (queues.events.pump) outlives a failed read, whatever failed (Django's
InterfaceError is no DatabaseError; a bug is neither): it logs, waits and reads again,
so its subscribers still hear every event. A pump thread that dies anyway is started
again by the next subscriber that joins."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import InterfaceError

from queues import services
from queues.events import pump
from queues.events.log import events_after as read_log
from queues.jobspec import JobSpec
from queues.models import JobEvent

from .eventstreams import log_readable
from .support import SETUP

pytestmark = pytest.mark.django_db(transaction=True)


class Died(BaseException):
    """What no ``except Exception`` catches: the thread ends."""


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    running = asyncio.new_event_loop()
    yield running
    running.close()


def _failing_once(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> list[int]:
    """The pump's next read raises ``error``; later ones read the log. Returns the
    count of reads (one item per read)."""
    reads: list[int] = []

    def events_after(*args: Any, **kwargs: Any) -> Any:
        reads.append(1)
        if len(reads) == 1:
            raise error
        return read_log(*args, **kwargs)

    monkeypatch.setattr(pump, "events_after", events_after)
    monkeypatch.setattr(pump, "RETRY_SECONDS", 0.1)
    return reads


def _push_and_hear(subscriber: pump.Subscriber, what: str) -> None:
    """Push a job; wait until ``subscriber`` has its event."""
    job = services.job_push(queue_name="jobs:a", spec=JobSpec(data={}), owner="t", actor=SETUP)
    log_readable()
    _until(lambda: any(event.job_id == job.job.id for event in subscriber.buffer), what)


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.mark.parametrize(
    "error", [InterfaceError("connection already closed"), RuntimeError("a bug")]
)
def test_a_failed_read_is_logged_and_the_pump_reads_on(
    error: Exception,
    monkeypatch: pytest.MonkeyPatch,
    loop: asyncio.AbstractEventLoop,
    caplog: pytest.LogCaptureFixture,
) -> None:
    JobEvent.objects.all().delete()
    reads = _failing_once(monkeypatch, error)
    events = pump.Pump()
    subscriber = pump.Subscriber(loop, lambda name: True)
    events.join(subscriber)
    try:
        _until(lambda: len(reads) > 1, "the pump did not read again")
        _push_and_hear(subscriber, "the subscriber never heard of the push")
    finally:
        events.leave(subscriber)
    assert "event pump: read failed" in caplog.text


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_pump_thread_that_died_is_started_again_by_the_next_join(
    monkeypatch: pytest.MonkeyPatch, loop: asyncio.AbstractEventLoop
) -> None:
    JobEvent.objects.all().delete()
    _failing_once(monkeypatch, Died())
    events = pump.Pump()
    first = pump.Subscriber(loop, lambda name: True)
    events.join(first)
    _until(lambda: events._thread is None, "the dead thread is still counted as running")
    second = pump.Subscriber(loop, lambda name: True)
    events.join(second)
    try:
        _push_and_hear(second, "the pump was not started again")
    finally:
        events.leave(first)
        events.leave(second)
