"""Many workers, one queue: on PostgreSQL, processes pulling through the full API stack
never share a job, lose none, and complete each exactly once."""

from __future__ import annotations

import multiprocessing
from collections import Counter
from typing import Any

import pytest
from django.db import connections

from queues.models import Job

from .support import Api, make_token, postgres_only

WORKERS = 4
JOBS = 2000


def _work(token: str, results: Any) -> None:
    connections.close_all()  # a fresh connection per process, never the parent's
    api = Api()
    taken: list[tuple[str, str]] = []
    acked = 0
    idle = 0
    while idle < 3:
        call = api.post("/queues/race/pull", {"count": 25, "lease": 300}, as_=token)
        jobs = call.body["jobs"]
        if not jobs:
            idle += 1
            continue
        idle = 0
        taken += [(job["id"], job["lease_id"]) for job in jobs]
        acks = [{"id": job["id"], "lease_id": job["lease_id"]} for job in jobs]
        if api.post("/jobs/ack", {"jobs": acks}, as_=token).status == 200:
            acked += len(jobs)
    results.put((taken, acked))
    connections.close_all()


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_pullers_complete_every_job_exactly_once() -> None:
    token = make_token("racer", "race=push,pull,ack")
    api = Api()
    for start in range(0, JOBS, 1000):
        batch = [{"data": {"n": n}} for n in range(start, start + 1000)]
        assert api.post("/queues/race/jobs/batch", {"jobs": batch}, as_=token).status == 201
    connections.close_all()
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    workers = [context.Process(target=_work, args=(token, results)) for _ in range(WORKERS)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=300) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    taken = Counter(job_id for jobs, _ in outcomes for job_id, _ in jobs)
    assert len(taken) == JOBS  # none lost
    assert max(taken.values()) == 1  # no job handed to two workers under a live lease
    assert sum(acked for _, acked in outcomes) == JOBS
    assert all(n > 0 for n in (len(jobs) for jobs, _ in outcomes)), "every worker got work"
    assert Job.objects.filter(state="completed").count() == JOBS
    assert not Job.objects.exclude(state="completed").exists()
