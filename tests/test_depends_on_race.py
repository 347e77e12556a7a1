"""A dependency finishing (or deleted) while a job depending on it is pushed, on
PostgreSQL: whichever transaction takes the target's row first, the new job ends up
ready, never waiting for a job that finished unseen (queues.dependents.watch_targets),
and a target deleted meanwhile is an unknown dependency."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import pytest
from django.db import connection, transaction

from compliance.audit import Actor
from queues import pulling, services
from queues.errors import UnknownDependency
from queues.jobspec import JobSpec
from queues.models import Job, JobState

from .support import postgres_only

OWNER = "family:race"
ACTOR = Actor.command("race")


def _held(work: Callable[[], None], held: threading.Event, release: threading.Event) -> None:
    """``work`` in a transaction kept open (its row locks held) until ``release``."""
    try:
        with transaction.atomic():
            work()
            held.set()
            assert release.wait(10)
    finally:
        connection.close()


def _alone(work: Callable[[], None]) -> None:
    try:
        work()
    finally:
        connection.close()


@postgres_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("first", ["ack", "push"])
def test_a_dependency_finishing_during_the_push_still_settles_the_new_job(first: str) -> None:
    target = services.job_push(
        queue_name="race:a", spec=JobSpec(data={}), owner=OWNER, actor=ACTOR
    ).job
    [leased] = pulling.jobs_pull(
        queue_name="race:a", count=1, lease_seconds=60, owner=OWNER, actor=ACTOR
    )
    lease = leased.lease_id
    assert lease is not None
    pushed: list[uuid.UUID] = []

    def ack() -> None:
        services.job_ack(job_id=target.id, lease_id=lease, owner=OWNER, actor=ACTOR)

    def push() -> None:
        spec = JobSpec(data={}, depends_on=(target.id,))
        pushed.append(
            services.job_push(queue_name="race:b", spec=spec, owner=OWNER, actor=ACTOR).job.id
        )

    holder, other = (ack, push) if first == "ack" else (push, ack)
    held, release = threading.Event(), threading.Event()
    first_thread = threading.Thread(target=_held, args=(holder, held, release))
    first_thread.start()
    assert held.wait(10)
    second_thread = threading.Thread(target=_alone, args=(other,))
    second_thread.start()
    time.sleep(0.3)  # let it reach the target's row lock (the outcome holds either way)
    release.set()
    first_thread.join(10)
    second_thread.join(10)
    assert Job.objects.get(id=target.id).state == JobState.COMPLETED
    [job_id] = pushed
    assert Job.objects.get(id=job_id).state == JobState.WAITING


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_dependency_deleted_during_the_push_is_an_unknown_dependency() -> None:
    """The push looked the target up before the delete committed, and its mark waited
    for the delete: the target is gone, so the push is refused like any unknown id,
    never left with a row pointing at no job (a foreign-key failure at commit)."""
    target = services.job_push(
        queue_name="race:a", spec=JobSpec(data={}), owner=OWNER, actor=ACTOR
    ).job
    refused: list[Exception] = []

    def delete() -> None:
        services.jobs_delete(job_ids=[target.id], reason="", actor=ACTOR)

    def push() -> None:
        spec = JobSpec(data={}, depends_on=(target.id,))
        try:
            services.job_push(queue_name="race:b", spec=spec, owner=OWNER, actor=ACTOR)
        except Exception as exc:
            refused.append(exc)

    held, release = threading.Event(), threading.Event()
    deleting = threading.Thread(target=_held, args=(delete, held, release))
    deleting.start()
    assert held.wait(10)
    pushing = threading.Thread(target=_alone, args=(push,))
    pushing.start()
    time.sleep(0.3)  # let it reach the target's row lock (the outcome holds either way)
    release.set()
    deleting.join(10)
    pushing.join(10)
    [error] = refused
    assert isinstance(error, UnknownDependency), repr(error)
    assert error.errors[0].path == "/depends_on/0"
    assert not Job.objects.filter(queue__name="race:b").exists()
