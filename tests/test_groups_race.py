"""Groups under concurrency, on PostgreSQL: processes pulling a grouped queue through the
full API stack, while another pushes higher-priority jobs into the same groups, never
have more than group_concurrency active jobs in a group, hand every job out once, keep
each group's FIFO, and let no error escape (a claim that loses a slot to a concurrent
one is retried)."""

from __future__ import annotations

import multiprocessing
from collections import Counter, defaultdict
from typing import Any

import pytest
from django.db import connection, connections
from django.db.models import Min

from queues.models import EventKind, Job, JobEvent, JobState, Queue

from .support import Api, make_token, postgres_only

Q = "race-groups"
WORKERS = 4
GROUPS = 12
PER_GROUP = 15
PUSHED = 60


def _max_active_per_group() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM queues_job "
            "WHERE state = 'active' AND group_key IS NOT NULL GROUP BY group_key) c"
        )
        return int(cursor.fetchone()[0])


def _work(token: str, results: Any) -> None:
    connections.close_all()  # a fresh connection per process, never the parent's
    api = Api()
    taken: list[str] = []
    statuses: Counter[int] = Counter()
    most = 0
    idle = 0
    while idle < 5:
        call = api.post(f"/queues/{Q}/pull", {"count": 5, "lease": 300}, as_=token)
        statuses[call.status] += 1
        jobs = call.body["jobs"] if call.status == 200 else []
        most = max(most, _max_active_per_group())
        if not jobs:
            idle += 1
            continue
        idle = 0
        taken += [job["id"] for job in jobs]
        acks = [{"id": job["id"], "lease_id": job["lease_id"]} for job in jobs]
        statuses[api.post("/jobs/ack", {"jobs": acks}, as_=token).status] += 1
    results.put(("worker", taken, dict(statuses), most))
    connections.close_all()


def _push_more(token: str, results: Any) -> None:
    connections.close_all()
    api = Api()
    statuses: Counter[int] = Counter()
    for n in range(PUSHED):
        body = {"data": {"n": n}, "group": f"g{n % GROUPS}", "priority": 5}
        statuses[api.post(f"/queues/{Q}/jobs", body, as_=token).status] += 1
    results.put(("pusher", [], dict(statuses), 0))
    connections.close_all()


@postgres_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("group_concurrency", [1, 3])
def test_grouped_pullers_and_a_pusher_race(group_concurrency: int) -> None:
    token = make_token("racer", f"{Q}=push,pull,ack,admin")
    api = Api()
    batch = [{"data": {"n": n}, "group": f"g{n % GROUPS}"} for n in range(GROUPS * PER_GROUP)]
    assert api.post(f"/queues/{Q}/jobs/batch", {"jobs": batch}, as_=token).status == 201
    body = {"max": group_concurrency}
    assert api.request("PUT", f"/queues/{Q}/group-concurrency", body, as_=token).status == 200
    assert Queue.objects.get(name=Q).grouped
    connections.close_all()
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    processes = [context.Process(target=_work, args=(token, results)) for _ in range(WORKERS)]
    processes.append(context.Process(target=_push_more, args=(token, results)))
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=600) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    statuses: Counter[int] = Counter()
    for _, _, seen, _ in outcomes:
        statuses.update(seen)
    assert set(statuses) == {200, 201}, statuses
    assert max(most for _, _, _, most in outcomes) <= group_concurrency
    taken = Counter(job_id for _, jobs, _, _ in outcomes for job_id in jobs)
    total = GROUPS * PER_GROUP + PUSHED
    assert len(taken) == total and set(taken.values()) == {1}
    assert Job.objects.filter(queue__name=Q, state=JobState.COMPLETED).count() == total
    assert not Job.objects.filter(queue__name=Q, attempts__gt=1).exists()
    if group_concurrency == 1:
        _assert_fifo_per_group()


def _assert_fifo_per_group() -> None:
    """With one slot a group's claims are serial (the next needs the last one acked and
    committed), so the ids of the claims' `active` events, drawn from a sequence inside
    each claim, order them: within a group and a priority, by run_at then id. (started_at
    is the puller's clock read before its claim ran, so it cannot witness the order.)"""
    claimed_by = dict(
        JobEvent.objects.filter(queue_id=Queue.objects.get(name=Q).pk, kind=EventKind.ACTIVE)
        .values("job_id")
        .annotate(first=Min("id"))
        .values_list("job_id", "first")
    )
    jobs = list(Job.objects.filter(queue__name=Q))
    assert len(claimed_by) == len(jobs)
    claimed: dict[tuple[str | None, int], list[Job]] = defaultdict(list)
    for job in sorted(jobs, key=lambda job: claimed_by[job.id]):
        claimed[(job.group_key, job.priority)].append(job)
    for jobs in claimed.values():
        assert [job.id for job in jobs] == [
            job.id for job in sorted(jobs, key=lambda job: (job.run_at, job.id))
        ]
