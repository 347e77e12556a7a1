"""One tenant cannot starve the others: each process lets only so many pulls long-poll at
once (LONG_POLL_MAX_WAITERS), and a token family only so many of those
(LONG_POLL_MAX_WAITERS_PER_FAMILY). A pull past a cap answers at once with what is ready
and Retry-After, audited like any pull; a slot is given back however the pull ends.
tests/test_long_poll_starvation.py replays the attack on a real gunicorn."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from django.conf import settings
from django.db import OperationalError, connection
from prometheus_client import REGISTRY
from pytest_django.fixtures import SettingsWrapper

from compliance.models import AuditEvent
from queues import waitslots
from queues.wakes import Wake
from security.services import token_rotate

from .support import SETUP, Api, Call, in_a_thread, make_token, push

pytestmark = pytest.mark.django_db(transaction=True)

#: Long enough that a pull still waiting at the end of a test is a failure, not a pass.
LONG_WAIT = 20
#: "At once": far below any wait these tests ask for.
AT_ONCE_SECONDS = 1.0


@pytest.fixture
def caps(settings: SettingsWrapper) -> Callable[[int, int], None]:
    def set_caps(total: int, per_family: int) -> None:
        settings.LONG_POLL_MAX_WAITERS = total
        settings.LONG_POLL_MAX_WAITERS_PER_FAMILY = per_family

    return set_caps


def _pull(token: str, queue: str, **fields: object) -> Call:
    try:
        return Api().post(f"/queues/{queue}/pull", fields, as_=token)
    finally:
        connection.close()


def _timed_pull(token: str, queue: str, **fields: object) -> tuple[Call, float]:
    started = time.monotonic()
    call = _pull(token, queue, **fields)
    return call, time.monotonic() - started


@contextmanager
def waiting(token: str, queue: str, count: int) -> Iterator[list[Call]]:
    """``count`` pulls of ``token`` long-polling on ``queue`` (an empty one) for the
    block; on the way out one push each wakes them, and their answers are yielded."""
    answers: list[Call] = []
    held_before = waitslots.SLOTS.held()
    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(_pull, token, queue, wait=LONG_WAIT) for _ in range(count)]
        deadline = time.monotonic() + 10
        while waitslots.SLOTS.held() < held_before + count:
            assert time.monotonic() < deadline, "the pulls never started waiting"
            assert not any(future.done() for future in futures), [f.result() for f in futures]
            time.sleep(0.02)
        try:
            yield answers
        finally:
            for _ in range(count):
                push(Api(), token, queue=queue)
            answers.extend(future.result(timeout=LONG_WAIT) for future in futures)


def _over_cap() -> float:
    return REGISTRY.get_sample_value("flashq_long_polls_over_cap_total") or 0.0


def test_a_family_past_its_cap_gets_an_empty_batch_at_once_with_retry_after(
    caps: Callable[[int, int], None],
) -> None:
    caps(4, 1)
    worker = make_token("greedy", "greedy:*=pull,push")
    counted = _over_cap()
    with waiting(worker, "greedy:q", 1) as answers:
        call, took = _timed_pull(worker, "greedy:q", wait=LONG_WAIT)
        assert call.status == 200, call.body
        assert call.body == {"jobs": []}
        assert call.headers["Retry-After"] == "2"
        assert took < AT_ONCE_SECONDS
    # The one within the cap really waited, and was woken by the push.
    [woken] = answers
    assert woken.status == 200 and len(woken.body["jobs"]) == 1
    assert "Retry-After" not in woken.headers
    assert _over_cap() == counted + 1
    # Audited as any pull: one ok event per answered pull, the refused wait included.
    outcomes = AuditEvent.objects.filter(action="pull", queue="greedy:q")
    assert list(outcomes.values_list("outcome", flat=True)) == ["ok", "ok"]


def test_a_rotated_twin_counts_against_the_same_family(
    caps: Callable[[int, int], None],
) -> None:
    caps(4, 1)
    first = make_token("worker", "fam:*=pull,push")
    _, twin = token_rotate(name="worker", overlap_hours=1, actor=SETUP)
    with waiting(first, "fam:q", 1):
        call, took = _timed_pull(twin, "fam:q", wait=LONG_WAIT)
        assert call.headers.get("Retry-After") == "2" and took < AT_ONCE_SECONDS


def test_the_process_cap_holds_whatever_the_family(caps: Callable[[int, int], None]) -> None:
    caps(2, 1)
    first = make_token("first", "*=pull,push")
    second = make_token("second", "*=pull,push")
    third = make_token("third", "*=pull,push")
    with waiting(first, "a:q", 1), waiting(second, "b:q", 1):
        call, took = _timed_pull(third, "c:q", wait=LONG_WAIT)
        assert call.status == 200 and call.body == {"jobs": []}
        assert call.headers["Retry-After"] == "2" and took < AT_ONCE_SECONDS
    assert waitslots.SLOTS.held() == 0


def test_past_the_cap_ready_jobs_are_still_handed_out_without_retry_after(
    caps: Callable[[int, int], None],
) -> None:
    caps(4, 1)
    worker = make_token("worker", "jobs:*=pull,push")
    with waiting(worker, "jobs:idle", 1):
        pushed = push(Api(), worker, queue="jobs:ready")
        call, took = _timed_pull(worker, "jobs:ready", wait=LONG_WAIT)
        assert [job["id"] for job in call.body["jobs"]] == [pushed["id"]]
        assert "Retry-After" not in call.headers and took < AT_ONCE_SECONDS


def test_past_the_cap_work_that_came_meanwhile_is_handed_out_without_retry_after(
    caps: Callable[[int, int], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    caps(4, 1)
    worker = make_token("worker", "jobs:*=pull,push")
    pushed: list[dict[str, object]] = []

    def full_after_a_push(owner: str, *, total_cap: int, owner_cap: int) -> bool:
        # Between the pull's first, empty, claim and its slot: a job arrives (from
        # another client: the slot is taken on the event loop), and the family's slots
        # are all taken.
        pushed.append(in_a_thread(lambda: push(Api(), worker, queue="jobs:q")))
        return False

    monkeypatch.setattr(waitslots.SLOTS, "take", full_after_a_push)
    call, took = _timed_pull(worker, "jobs:q", wait=LONG_WAIT)
    assert [job["id"] for job in call.body["jobs"]] == [pushed[0]["id"]]
    assert "Retry-After" not in call.headers and took < AT_ONCE_SECONDS


def test_within_the_cap_a_pull_waits_its_time(caps: Callable[[int, int], None]) -> None:
    caps(4, 2)
    worker = make_token("worker", "jobs:*=pull,push")
    with waiting(worker, "jobs:q", 1):
        call, took = _timed_pull(worker, "jobs:other", wait=0.5)
    assert call.body == {"jobs": []} and "Retry-After" not in call.headers
    assert took >= 0.5


def test_no_waiters_at_all_turns_long_polls_into_plain_polls(
    caps: Callable[[int, int], None],
) -> None:
    caps(0, 0)
    worker = make_token("worker", "jobs:*=pull")
    call, took = _timed_pull(worker, "jobs:q", wait=LONG_WAIT)
    assert call.body == {"jobs": []} and call.headers["Retry-After"] == "2"
    assert took < AT_ONCE_SECONDS


def test_a_slot_is_given_back_when_the_wait_fails(
    caps: Callable[[int, int], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    caps(4, 1)
    worker = make_token("worker", "jobs:*=pull")

    async def database_gone(self: Wake, seconds: float) -> None:
        raise OperationalError("the database went away mid-wait")

    monkeypatch.setattr(Wake, "wait", database_gone)
    call = _pull(worker, "jobs:q", wait=LONG_WAIT)
    assert call.status == 503
    assert waitslots.SLOTS.held() == 0
    monkeypatch.undo()
    # The family's one slot is free again: the next pull waits.
    call, took = _timed_pull(worker, "jobs:q", wait=0.3)
    assert "Retry-After" not in call.headers and took >= 0.3


# -- the counter itself (no database) ------------------------------------------------------


@pytest.mark.django_db(transaction=False)
def test_concurrent_takers_get_exactly_the_cap() -> None:
    slots = waitslots.WaitSlots()
    start = threading.Barrier(16)

    def take(index: int) -> bool:
        start.wait(timeout=5)
        return slots.take(f"family:{index % 2}", total_cap=5, owner_cap=3)

    with ThreadPoolExecutor(max_workers=16) as pool:
        taken = list(pool.map(take, range(16)))
    assert sum(taken) == 5
    assert slots.held("family:0") <= 3 and slots.held("family:1") <= 3
    for index, got in enumerate(taken):
        if got:
            slots.give_back(f"family:{index % 2}")
    assert slots.held() == 0 and slots.held("family:0") == 0


@pytest.mark.django_db(transaction=False)
@pytest.mark.parametrize(
    ("given", "total", "per_family"), [(None, 1000, 250), ("40", 40, 10), ("2", 2, 1)]
)
def test_the_caps_default_to_a_thousand_and_a_quarter_per_family(
    given: str | None, total: int, per_family: int
) -> None:
    """A wait holds no thread any more (queues.waiting): the caps no longer follow a
    thread pool, and the family's share follows the total."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GUNICORN_", "LONG_POLL_"))
    }
    if given is not None:
        env["LONG_POLL_MAX_WAITERS"] = given
    env["GUNICORN_THREADS"] = "4"  # no longer read
    env["DJANGO_SETTINGS_MODULE"] = "flashq_project.settings.base"
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "from django.conf import settings as s; "
            "print(s.LONG_POLL_MAX_WAITERS, s.LONG_POLL_MAX_WAITERS_PER_FAMILY)",
        ],
        env=env,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert shown.stdout.split() == [str(total), str(per_family)]
