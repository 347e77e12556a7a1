"""The hot paths' queries, pinned. A change that adds one fails here and has to say
why. Inside a test the request's transaction shows as SAVEPOINT/RELEASE (BEGIN and
COMMIT in production, which Django does not count; a single push on PostgreSQL has
neither there: it is one statement in autocommit). A batch push's rows go in by COPY on
PostgreSQL, which Django does not count either. The queue's settings are read as the
process remembers them (queues.queuecache, on here as deployed): a push or pull whose
queue is not remembered reads it, QUEUE_READ more."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import override_settings

from queues import queuecache
from queues.models import Job, Queue

from .support import ON_POSTGRES, Api, Call, job_in, make_token, pull, push, waits_for

pytestmark = pytest.mark.django_db

# The queue's settings, when this process does not remember them (queues.queuecache).
QUEUE_READ = 1
# token+rules, savepoint, then on PostgreSQL one statement (job, audit event and wake-up
# check), on SQLite the job's insert and the event's; release
PUSH = 4 if ON_POSTGRES else 5
# token+rules, savepoint, insert (SQLite) or COPY (PostgreSQL, not counted), audit event
# (and on PostgreSQL the wake-up check), release
BATCH_PUSH = 4 if ON_POSTGRES else 5
# token+rules, savepoint, expired leases, claim, audit, release
PULL = 6
# A grouped queue's claim is one statement too; on PostgreSQL it runs in a savepoint of
# its own (SAVEPOINT, RELEASE), so a slot taken by a concurrent claim can be retried.
GROUPED_PULL = PULL + 2 if ON_POSTGRES else PULL
# token+rules, job's queue, savepoint, conditional update, job, audit, release
ACK = 7
# token+rules, jobs' queues, savepoint, then on PostgreSQL one statement (the live
# leases locked and completed, results sealed in it), on SQLite the leases for update,
# the update and (with results) the results' bulk update; audit, release
BATCH_ACK = 6 if ON_POSTGRES else 7
BATCH_ACK_RESULTS = BATCH_ACK if ON_POSTGRES else BATCH_ACK + 1
# A push with depends_on (only then): PUSH, and the targets' queues, their watched mark,
# the JobDependency rows, and a savepoint around the job's insert (it runs inside the
# push's transaction).
PUSH_DEPENDING = PUSH + 5
# token+rules, job's queue, savepoint, job, audit, release, its links (parent, depends_on)
GET_JOB = 7


@pytest.fixture(autouse=True)
def queue_cache() -> Iterator[None]:
    """The queue cache as deployed (the test settings turn it off), empty at first."""
    queuecache.forget_queues()
    with override_settings(QUEUE_CACHE_SECONDS=1.0):
        yield
    queuecache.forget_queues()


def _queries(
    django_assert_num_queries: Any, expected: int, call: Callable[[], Call], status: int
) -> None:
    with django_assert_num_queries(expected):
        assert call().status == status


def test_push_and_batch_push(api: Api, full: str, django_assert_num_queries: Any) -> None:
    push(api, full, queue="q")  # the queue exists, as it does on the hot path
    queuecache.forget_queues()
    _queries(
        django_assert_num_queries,
        PUSH + QUEUE_READ,
        lambda: api.post("/queues/q/jobs", {"data": {"n": 1}}, as_=full),
        201,
    )
    _queries(  # the queue remembered, as by a busy app server
        django_assert_num_queries,
        PUSH,
        lambda: api.post("/queues/q/jobs", {"data": {"n": 1}}, as_=full),
        201,
    )
    # As many jobs as one INSERT takes on SQLite, whose statements take at most 999
    # parameters (29 jobs of 34 columns).
    count = 999 // len(Job._meta.concrete_fields)
    batch = {"jobs": [{"data": {"n": n}} for n in range(count)]}
    _queries(
        django_assert_num_queries,
        BATCH_PUSH,
        lambda: api.post("/queues/q/jobs/batch", batch, as_=full),
        201,
    )


@pytest.mark.skipif(not ON_POSTGRES, reason="keyed pushes without a lookup are PostgreSQL's")
@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        # The client keys every push: a new key is the same one statement, no lookup.
        ("/queues/q/jobs", {"data": {"n": 1}, "key": "a-new-key"}, PUSH),
        # Its producer keys every push it gathers: new keys go in with no lookup.
        (
            "/queues/q/jobs/batch",
            {"jobs": [{"data": {"n": n}, "key": f"new-{n}"} for n in range(20)]},
            BATCH_PUSH,
        ),
    ],
    ids=["push", "batch"],
)
def test_a_keyed_push_costs_what_an_unkeyed_one_does(
    api: Api,
    full: str,
    django_assert_num_queries: Any,
    path: str,
    body: dict[str, Any],
    expected: int,
) -> None:
    push(api, full, queue="q")
    push(api, full, queue="q")  # the queue remembered
    _queries(django_assert_num_queries, expected, lambda: api.post(path, body, as_=full), 201)


def test_push_with_depends_on(api: Api, full: str, django_assert_num_queries: Any) -> None:
    targets = [push(api, full, queue="q")["id"] for _ in range(3)]
    body = {"data": {"n": 1}, "depends_on": targets}
    _queries(
        django_assert_num_queries,
        PUSH_DEPENDING,
        lambda: api.post("/queues/q/jobs", body, as_=full),
        201,
    )


def test_pull_ack_and_batch_ack(api: Api, full: str, django_assert_num_queries: Any) -> None:
    for _ in range(12):
        push(api, full, queue="q")
    _queries(
        django_assert_num_queries,
        PULL + QUEUE_READ,
        lambda: api.post("/queues/q/pull", {"count": 1}, as_=full),
        200,
    )
    _queries(  # the queue remembered
        django_assert_num_queries,
        PULL,
        lambda: api.post("/queues/q/pull", {"count": 1}, as_=full),
        200,
    )
    jobs = pull(api, full, queue="q", count=10)
    first, rest = jobs[0], jobs[1:]
    _queries(
        django_assert_num_queries,
        ACK,
        lambda: api.post(f"/jobs/{first['id']}/ack", {"lease_id": first["lease_id"]}, as_=full),
        200,
    )
    acks = {"jobs": [{"id": j["id"], "lease_id": j["lease_id"], "result": {}} for j in rest]}
    _queries(
        django_assert_num_queries,
        BATCH_ACK_RESULTS,
        lambda: api.post("/jobs/ack", acks, as_=full),
        200,
    )


def test_pull_of_a_grouped_queue(api: Api, full: str, django_assert_num_queries: Any) -> None:
    # Grouped from the start: a grouped push's flip would have this test's transaction,
    # which never commits, read its queues from the database (queues.queuecache).
    Queue.objects.create(name="g", grouped=True)
    for n in range(11):
        push(api, full, queue="g", group=f"g{n % 3}")
    push(api, full, queue="g")
    pull(api, full, queue="g", count=1)  # the queue remembered
    _queries(
        django_assert_num_queries,
        GROUPED_PULL,
        lambda: api.post("/queues/g/pull", {"count": 10}, as_=full),
        200,
    )


def test_get_job(api: Api, full: str, django_assert_num_queries: Any) -> None:
    job = push(api, full, queue="q")
    _queries(
        django_assert_num_queries, GET_JOB, lambda: api.get(f"/jobs/{job['id']}", as_=full), 200
    )


# A watched job (a flow's child, a dependency) pays for settling, and only it: the jobs
# waiting for it locked, what they wait for read, and on PostgreSQL the NOTIFY that
# wakes its waiting clients; making one ready is one update more (and on PostgreSQL
# the wake-up check of its queue).
SETTLE = 3 if ON_POSTGRES else 2
READY = 2 if ON_POSTGRES else 1


def test_ack_of_a_child_pays_for_settling_its_parent(
    api: Api, full: str, django_assert_num_queries: Any
) -> None:
    first, last = job_in("q"), job_in("q")
    waits_for(job_in("p"), first, last)
    leased = {job["id"]: job for job in pull(api, full, queue="q", count=2)}
    for job, extra in ((first, SETTLE), (last, SETTLE + READY)):
        path, body = f"/jobs/{job.id}/ack", {"lease_id": leased[str(job.id)]["lease_id"]}
        with django_assert_num_queries(ACK + extra):
            assert api.post(path, body, as_=full).status == 200


@pytest.mark.skipif(not ON_POSTGRES, reason="the one-statement push is PostgreSQL's")
def test_a_push_statement_stays_within_psycopg_s_cache_of_parsed_statements(api: Api) -> None:
    """psycopg reuses a parsed statement only up to MAX_CACHED_STATEMENT_PARAMS
    parameters; past it every push is parsed anew in Python (a fifth more calls per
    push when the job table grew by three columns). A new job's NULLs are written in the
    statement, so its job-and-event INSERT stays within the cache."""
    from django.db import connection
    from psycopg import _queries

    seen: list[int] = []

    def count_params(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if "INSERT INTO" in sql and "queues_job" in sql:
            seen.append(len(params))
        return execute(sql, params, many, context)

    token = make_token("pusher", "*=push")
    with connection.execute_wrapper(count_params):
        push(api, token, queue="q")
        push(api, token, queue="q", key="k1", subject="s", tags=["t"], priority=3)
    assert len(seen) == 2
    assert max(seen) <= _queries.MAX_CACHED_STATEMENT_PARAMS
