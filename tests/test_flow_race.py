"""Flows under real concurrency, on PostgreSQL: threads, each on its own connection and
in its own transaction, acking the children of one parent at the same moment. The
parent becomes ready exactly once (one event says so, none is lost), whether the acks
come one by one or in batches, and jobs waiting on the same children as dependencies
settle the same way. A parent cancelled while its children are being acked ends
consistent (a lost deadlock is retried), and so does the retry helper itself; a child
retried while its sibling is acked never leaves its parent running without it."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from compliance.audit import Actor
from compliance.models import AuditEvent
from queues import flowretry, services
from queues.errors import LeaseConflict, StateConflict
from queues.models import Job, JobState

from .support import job_in, postgres_only, waits_for

pytestmark = [postgres_only, pytest.mark.django_db(transaction=True)]

CHILDREN = 24
OWNER = "token:racer"
WORKER = Actor.command("race-worker")


def _leased(count: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """``count`` active children with live leases: (job id, lease id)."""
    leases = []
    for _ in range(count):
        lease = uuid.uuid4()
        job = job_in(
            "race:c",
            state=JobState.ACTIVE,
            lease_id=lease,
            lease_owner=OWNER,
            lease_expires_at=timezone.now() + timedelta(minutes=5),
            attempts=1,
        )
        leases.append((job.id, lease))
    return leases


def _at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run each call in a thread of its own (its own connection), all released at the
    same moment; returns each call's result or the exception it raised."""
    start = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        try:
            start.wait(timeout=60)
            results[index] = calls[index]()
        except Exception as error:  # reported to the test
            results[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive()
    return results


def _ack(job_id: uuid.UUID, lease: uuid.UUID) -> Callable[[], Any]:
    return lambda: services.job_ack(job_id=job_id, lease_id=lease, owner=OWNER, actor=WORKER)


def _batch_ack(pairs: list[tuple[uuid.UUID, uuid.UUID]]) -> Callable[[], Any]:
    acks = [services.AckSpec(job_id, lease) for job_id, lease in pairs]
    return lambda: services.jobs_ack(acks=acks, owner=OWNER, actor=WORKER)


def _made_ready(job: Job) -> int:
    """How many events made ``job`` ready (each lists it after the jobs it acked)."""
    return sum(
        str(job.id) in event.job_ids
        for event in AuditEvent.objects.filter(action="ack").only("job_ids")
    )


@pytest.mark.parametrize("round_", range(4))
@pytest.mark.parametrize("batched", [False, True])
def test_children_acked_at_once_make_their_parent_ready_exactly_once(
    batched: bool, round_: int
) -> None:
    leases = _leased(CHILDREN)
    children = list(Job.objects.filter(id__in=[job_id for job_id, _ in leases]))
    parent = waits_for(job_in("race:p"), *children)
    # Jobs that depend on every child wait and settle alike (several waiting jobs, all
    # locked in id order, so acks on different connections never deadlock on them).
    dependents = [waits_for(job_in("race:d"), *children, kind="dependency") for _ in range(3)]
    if batched:
        calls = [_batch_ack(leases[i : i + 2]) for i in range(0, CHILDREN, 2)]
    else:
        calls = [_ack(job_id, lease) for job_id, lease in leases]
    results = _at_once(calls)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert Job.objects.filter(id__in=[c.id for c in children], state="completed").count() == (
        CHILDREN
    )
    for waiting in (parent, *dependents):
        assert Job.objects.get(id=waiting.id).state == JobState.WAITING
        assert _made_ready(waiting) == 1


def test_a_parent_cancelled_while_its_children_are_acked_ends_consistent() -> None:
    leases = _leased(20)
    children = list(Job.objects.filter(id__in=[job_id for job_id, _ in leases]))
    parent = waits_for(job_in("race:p"), *children)
    cancel = lambda: services.job_cancel(job_id=parent.id, actor=WORKER)  # noqa: E731
    calls = [_ack(job_id, lease) for job_id, lease in leases]
    calls.insert(len(calls) // 2, cancel)
    results = _at_once(calls)
    unexpected = [
        r for r in results if isinstance(r, Exception) and not isinstance(r, LeaseConflict)
    ]
    assert not unexpected, unexpected
    assert Job.objects.get(id=parent.id).state == JobState.CANCELLED
    acked = {result.id for result in results if isinstance(result, Job) and result.id != parent.id}
    states = dict(Job.objects.filter(id__in=[c.id for c in children]).values_list("id", "state"))
    # An ack that was answered 200 completed its child; every other child was cancelled.
    assert {job_id for job_id, state in states.items() if state == "completed"} == acked
    assert set(states.values()) <= {"completed", "cancelled"}


def test_a_child_failing_while_its_siblings_are_acked_fails_the_parent_once() -> None:
    """The failing child's parent cancels the siblings while it holds the parent, so an
    ack can deadlock with it: the loser runs again, and nothing ends half done."""
    leases = _leased(20)
    children = list(Job.objects.filter(id__in=[job_id for job_id, _ in leases]))
    parent = waits_for(job_in("race:p"), *children)
    (failing, lease), rest = leases[len(leases) // 2], leases[: len(leases) // 2]
    rest += leases[len(leases) // 2 + 1 :]

    def fail() -> Job:
        return services.job_fail(
            job_id=failing, lease_id=lease, owner=OWNER, error="boom", retry=False, actor=WORKER
        )

    calls = [_ack(job_id, lease) for job_id, lease in rest]
    calls.insert(len(calls) // 2, fail)
    results = _at_once(calls)
    refused = [r for r in results if isinstance(r, Exception)]
    assert all(isinstance(r, LeaseConflict) for r in refused), refused
    stored = Job.objects.get(id=parent.id)
    assert stored.state == JobState.FAILED and stored.error_code == "child_failed"
    assert len(stored.errors) == 1  # failed once
    acked = {r.id for r in results if isinstance(r, Job) and r.id != failing}
    states = dict(
        Job.objects.filter(id__in=[job_id for job_id, _ in rest]).values_list("id", "state")
    )
    assert {job_id for job_id, state in states.items() if state == "completed"} == acked
    assert set(states.values()) <= {"completed", "cancelled"}


def test_the_loser_of_a_deadlock_runs_again() -> None:
    one, two = job_in("race:a"), job_in("race:a")
    both_hold_one = threading.Barrier(2)
    runs: Counter[str] = Counter()

    def locking(first: Job, second: Job, name: str) -> Callable[[], str]:
        @services.deadlock_retried
        def lock() -> str:
            runs[name] += 1
            with transaction.atomic():
                list(Job.objects.select_for_update().filter(id=first.id))
                if runs[name] == 1:
                    both_hold_one.wait(timeout=30)
                list(Job.objects.select_for_update().filter(id=second.id))
            return name

        return lock

    results = _at_once([locking(one, two, "a"), locking(two, one, "b")])
    assert results == ["a", "b"]
    assert sorted(runs.values()) == [1, 2]  # one of them lost, and ran again


def _held_open(work: Callable[[], Any], held: threading.Event, release: threading.Event) -> None:
    """``work`` in a transaction kept open (its row locks held) until ``release``."""
    try:
        with transaction.atomic():
            work()
            held.set()
            assert release.wait(30)
    finally:
        connection.close()


@pytest.mark.parametrize("first", ["ack", "retry"])
def test_a_child_retried_while_its_sibling_is_acked_never_leaves_the_parent_behind(
    first: str,
) -> None:
    """Under ignore, the sibling's ack makes the parent ready unless the failed child is
    retried first: whichever transaction takes the parent's lock first, the parent never
    ends ready (or running) beside a retried child it no longer waits for."""
    [(sibling, lease)] = _leased(1)
    failed = job_in("race:c", state=JobState.FAILED, finished_at=timezone.now())
    parent = waits_for(
        job_in("race:p"), failed, Job.objects.get(id=sibling), on_child_failure="ignore"
    )
    outcome: list[Any] = []

    def retry() -> None:
        try:
            outcome.append(services.job_retry(job_id=failed.id, actor=WORKER))
        except Exception as error:  # reported to the test
            outcome.append(error)

    ack = _ack(sibling, lease)
    holder, other = (ack, retry) if first == "ack" else (retry, ack)
    held, release = threading.Event(), threading.Event()
    holding = threading.Thread(target=_held_open, args=(holder, held, release))
    holding.start()
    assert held.wait(30)
    waiting = threading.Thread(target=_at_once, args=([other],))
    waiting.start()
    waiting.join(0.5)  # it waits for the parent's lock (the outcome holds either way)
    release.set()
    holding.join(30)
    waiting.join(30)
    [result] = outcome
    states = (Job.objects.get(id=parent.id).state, Job.objects.get(id=failed.id).state)
    if first == "ack":
        assert isinstance(result, StateConflict), result
        assert states == (JobState.WAITING, JobState.FAILED)
    else:
        assert isinstance(result, Job), result
        assert states == (JobState.WAITING_CHILDREN, JobState.WAITING)


def test_a_parent_and_its_child_retried_at_once_end_consistent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Retrying a parent locks it, then its failed children; retrying a child locks it,
    then its parent. Made to cross (each holds its first lock when the other asks), one
    loses the deadlock and runs again: no error but a 409 for a job already retried."""
    child = job_in("race:c", state=JobState.FAILED, finished_at=timezone.now())
    parent = waits_for(job_in("race:p"), child)
    Job.objects.filter(id=parent.id).update(state=JobState.FAILED, error_code="child_failed")
    parent_locked, child_locked = threading.Event(), threading.Event()
    flows_retry, parents_started = flowretry.flows_retry, flowretry.parents_started

    def parent_side(roots: Any, **kwargs: Any) -> Any:  # in the parent's retry
        parent_locked.set()
        child_locked.wait(5)
        return flows_retry(roots, **kwargs)

    def child_side(children: Any) -> Any:  # in the child's retry
        if threading.current_thread().name == "child":
            child_locked.set()
            parent_locked.wait(5)
        return parents_started(children)

    monkeypatch.setattr("queues.services.actions.flows_retry", parent_side)
    monkeypatch.setattr("queues.services.actions.parents_started", child_side)
    outcome: dict[str, Any] = {}

    def retry(job: Job, name: str) -> None:
        try:
            outcome[name] = services.job_retry(job_id=job.id, actor=WORKER)
        except Exception as error:  # reported to the test
            outcome[name] = error
        finally:
            connection.close()

    threads = [
        threading.Thread(target=retry, args=(job, name), name=name)
        for job, name in ((parent, "parent"), (child, "child"))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    errors = [r for r in outcome.values() if isinstance(r, Exception)]
    assert all(isinstance(error, StateConflict) for error in errors), errors
    assert len(errors) <= 1
    assert Job.objects.get(id=parent.id).state == JobState.WAITING_CHILDREN
    assert Job.objects.get(id=child.id).state == JobState.WAITING
