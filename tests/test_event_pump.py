"""The event pump's fan-out (queues.events.pump): each subscriber gets only the events
of the queues it may hear about, and one that falls too far behind has its backlog
dropped and is told from where (the stream then sends ``reset``), so memory stays
bounded whatever a slow client does."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from django.test import override_settings

from queues.events.log import Cursor
from queues.events.pump import Subscriber
from queues.models import JobEvent

NAMES = {1: "jobs:a", 2: "jobs:b"}


def _events(count: int, queue_id: int = 1, start: int = 1) -> list[JobEvent]:
    at = datetime.now(UTC)
    return [
        JobEvent(
            id=start + n,
            txid=7,
            at=at,
            kind="pushed",
            job_id=uuid.uuid4(),
            queue_id=queue_id,
            state="waiting",
            attempts=0,
            progress=0,
        )
        for n in range(count)
    ]


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    running = asyncio.new_event_loop()
    yield running
    running.close()


def test_a_subscriber_gets_only_the_queues_it_reaches(loop: asyncio.AbstractEventLoop) -> None:
    subscriber = Subscriber(loop, lambda name: name == "jobs:a")
    subscriber.offer([*_events(2, queue_id=2), *_events(3, queue_id=1, start=10)], NAMES)
    subscriber.offer(_events(1, queue_id=99, start=20), NAMES)  # a queue it cannot name
    assert [event.id for event in subscriber.buffer] == [10, 11, 12]
    loop.run_until_complete(asyncio.sleep(0))
    assert subscriber.wake.is_set()


def test_interleaved_queues_keep_the_log_order(loop: asyncio.AbstractEventLoop) -> None:
    subscriber = Subscriber(loop, lambda name: name in ("jobs:a", "jobs:b"))
    events = [*_events(1, queue_id=1), *_events(1, queue_id=2, start=2)]
    events += [*_events(1, queue_id=1, start=3), *_events(1, queue_id=99, start=4)]
    subscriber.offer(events, NAMES)
    assert [event.id for event in subscriber.buffer] == [1, 2, 3]


def test_a_round_costs_each_subscriber_a_look_per_queue_not_per_event(
    loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2,000 idle subscribers beside 400 pushes a second asked once per event was most
    of what the pump cost (tens of thousands of looks a round)."""
    looks: list[str | None] = []
    asked = Subscriber.wants

    def counted(self: Subscriber, queue_name: str | None) -> bool:
        looks.append(queue_name)
        return asked(self, queue_name)

    monkeypatch.setattr(Subscriber, "wants", counted)
    busy = [*_events(300, queue_id=2), *_events(200, queue_id=1, start=400)]
    elsewhere = Subscriber(loop, lambda name: name == "jobs:c")
    elsewhere.offer(busy, NAMES)
    assert sorted(looks, key=str) == ["jobs:a", "jobs:b"] and not elsewhere.buffer
    looks.clear()
    follower = Subscriber(loop, lambda name: True)
    follower.offer(busy, NAMES)
    assert len(looks) == 2 and len(follower.buffer) == 500


def test_its_answer_changes_with_the_token(loop: asyncio.AbstractEventLoop) -> None:
    subscriber = Subscriber(loop, lambda name: True)
    subscriber.offer(_events(1, queue_id=2), NAMES)
    subscriber.forget(lambda name: name == "jobs:a")
    subscriber.offer(_events(1, queue_id=2, start=5), NAMES)
    assert [event.id for event in subscriber.buffer] == [1]


@override_settings(EVENT_STREAM_MAX_BEHIND=10)
def test_a_subscriber_too_far_behind_loses_its_backlog_not_the_process_memory(
    loop: asyncio.AbstractEventLoop,
) -> None:
    subscriber = Subscriber(loop, lambda name: True)
    subscriber.offer(_events(8), NAMES)
    assert subscriber.behind_through is None
    subscriber.offer(_events(5, start=9), NAMES)
    assert len(subscriber.buffer) == 0
    assert subscriber.behind_through == Cursor(7, 13)
    subscriber.offer(_events(2, start=14), NAMES)
    assert [event.id for event in subscriber.buffer] == [14, 15]
