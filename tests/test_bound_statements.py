"""The hot statements (kernel.statements) are bound by PostgreSQL, a push's INSERT is
prepared on its connection (DB_PREPARED_STATEMENTS) and nothing else is; query logging
still shows them with their values; Django's health check and error classes hold."""

from __future__ import annotations

import subprocess
import sys
import uuid
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.db import DataError, connection, transaction
from django.db.models.signals import post_init
from django.test.utils import CaptureQueriesContext

from kernel import statements
from queues.models import Job, Queue

from .processes import database_url, production_secrets
from .support import Api, postgres_only, pull, push

pytestmark = pytest.mark.django_db


def _prepared() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE NOT from_sql")
        return [row[0] for row in cursor.fetchall()]


@postgres_only
def test_a_push_s_insert_is_prepared_at_its_first_run_and_nothing_else_is(
    api: Api, full: str
) -> None:
    assert settings.DATABASES["default"]["OPTIONS"]["prepare_threshold"] == 2**31
    push(api, full, data={"n": "first"})
    [statement] = _prepared()
    assert statement.startswith('WITH job AS (INSERT INTO "queues_job"')
    assert "$1" in statement and "first" not in statement  # values travel apart
    for n in range(6):  # the claim, Django's own statements: never prepared
        push(api, full, data={"n": n})
        pull(api, full, count=1)
    assert _prepared() == [statement]


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_bound_cursor_runs_django_s_health_check_first() -> None:
    """DB_HEALTH_CHECKS: a connection the database dropped is replaced before a bound
    statement runs on it, as before any of Django's own."""
    db = connection.settings_dict
    db["CONN_HEALTH_CHECKS"] = True
    connection.close()
    try:
        connection.ensure_connection()
        pid = connection.connection.info.backend_pid
        with psycopg.connect(database_url(), autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(%s)", [pid])
        connection.health_check_done = False  # type: ignore[attr-defined]  # a new request
        with statements.bound_cursor(prepare=False) as cursor:
            cursor.execute("SELECT %s::int", [1])
            assert cursor.fetchone() == (1,)
        assert connection.connection.info.backend_pid != pid
    finally:
        db["CONN_HEALTH_CHECKS"] = False
        connection.close()


@postgres_only
def test_a_bound_statement_s_error_is_django_s_when_queries_are_logged() -> None:
    with (
        CaptureQueriesContext(connection),
        pytest.raises(DataError),
        statements.bound_cursor(prepare=False) as cursor,
    ):
        cursor.execute("SELECT %s::text", ["a\x00b"])  # NUL: psycopg refuses it


@postgres_only
def test_a_bound_statement_is_logged_with_its_values(api: Api, full: str) -> None:
    with CaptureQueriesContext(connection) as queries:
        job = push(api, full, data={"n": 1})
    [insert] = [
        q["sql"] for q in queries.captured_queries if 'INSERT INTO "queues_job"' in q["sql"]
    ]
    assert (
        f"'{uuid.UUID(job['id']).hex}'::uuid" in insert
        and "%s" not in insert
        and "$1" not in insert
    )


@postgres_only
def test_the_claim_is_bound_and_never_prepared(
    api: Api, full: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bound: list[str] = []
    real = statements._Unprepared.execute

    def spy(self: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
        bound.append(str(query))
        return real(self, query, params, **kwargs)

    monkeypatch.setattr(statements._Unprepared, "execute", spy)
    pushed = [push(api, full, data={"n": n})["id"] for n in range(8)]
    pulled = [job["id"] for _ in range(8) for job in pull(api, full, count=1)]
    assert pulled == pushed
    assert len([q for q in bound if q.startswith("WITH picked AS")]) == 8
    # The expired-lease check before each claim is bound too (kernel.statements.bound_objects).
    assert len([q for q in bound if q.startswith("SELECT * FROM queues_job WHERE state")]) == 8
    assert not [s for s in _prepared() if "SKIP LOCKED" in s]


@pytest.mark.parametrize(
    ("value", "expected"), [("false", "None"), ("off", "None"), ("true", str(2**31))]
)
def test_db_prepared_statements_sets_psycopg_s_threshold(value: str, expected: str) -> None:
    env = {
        **production_secrets(),
        "DATABASE_URL": "postgres://flashq@127.0.0.1:5432/flashq",  # never connected
        "DJANGO_SETTINGS_MODULE": "flashq_project.settings.production",
        "DB_PREPARED_STATEMENTS": value,
        "PATH": "/usr/bin:/bin",
    }
    code = (
        "import django; django.setup(); from django.db import connection; "
        "print(connection.get_connection_params()['prepare_threshold'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected


_CLAIMED = (
    "UPDATE queues_job SET state = 'active' WHERE queue_id = %(queue_id)s "
    "RETURNING id, queue_id, state, data, tags, run_at, lease_id, started_at"
)


def _state(job: Job) -> tuple[Any, ...]:
    return (
        {name: value for name, value in job.__dict__.items() if name != "_state"},
        job._state.adding,
        job._state.db,
        job.get_deferred_fields(),
    )


def _both(sql: str, params: Any) -> tuple[list[Job], list[Job]]:
    """bound_objects' instances and RawQuerySet's for the same statement, each run in a
    transaction rolled back after (the statement may change rows)."""
    with transaction.atomic():
        ours = statements.bound_objects(Job, sql, params)
        transaction.set_rollback(True)
    with transaction.atomic():
        raw = list(Job.objects.raw(sql, params))
        transaction.set_rollback(True)
    return ours, raw


def _same(ours: list[Job], raw: list[Job]) -> None:
    assert [_state(job) for job in ours] == [_state(job) for job in raw]
    for jobs in (ours, raw):  # the sealed data opened on first read, alike
        assert sorted(job.data["n"] for job in jobs) == sorted(job.data["n"] for job in raw)
    assert [_state(job) for job in ours] == [_state(job) for job in raw]


_STAR = "SELECT * FROM queues_job ORDER BY id"
# Both statements, live on PostgreSQL: some columns in their own order, and all of them.
_EACH_STATEMENT = (
    postgres_only,
    pytest.mark.django_db(transaction=True),
    pytest.mark.parametrize("sql", [_CLAIMED, _STAR], ids=["some-columns", "select-star"]),
)


def _each_statement(test: Any) -> Any:
    for mark in reversed(_EACH_STATEMENT):
        test = mark(test)
    return test


@_each_statement
def test_bound_objects_are_the_instances_a_raw_queryset_makes(
    api: Api, full: str, sql: str
) -> None:
    """Filled straight from the rows (Job qualifies: the fast path is taken), yet the
    same as Model.objects.raw's: converted values (sealed data, JSON tags), the rest
    deferred, not adding, from the connection they came from; whatever the order of
    the statement's columns."""
    for n in range(3):
        push(api, full, data={"n": n, "text": "é"}, tags=["t", str(n)])
    queue_id = Queue.objects.get(name="jobs:q").pk
    assert statements._shape(Job, ("id", "data"), "default").plain
    ours, raw = _both(sql, {"queue_id": queue_id})
    assert len(ours) == 3
    _same(ours, raw)
    assert {job.priority for job in ours} == {0}  # a deferred field loads as before


@_each_statement
def test_with_init_receivers_the_instances_come_from_from_db_and_are_the_same(
    api: Api, full: str, sql: str
) -> None:
    """A receiver connected at any time, even after the statement's first run, is
    honoured: from_db is called per row, with the columns in its order."""
    for n in range(2):
        push(api, full, data={"n": n}, tags=[str(n)])
    queue_id = Queue.objects.get(name="jobs:q").pk
    _both(sql, {"queue_id": queue_id})  # the statement's shape is known (cached) now
    seen: list[Job] = []

    def receiver(sender: type[Job], instance: Job, **kwargs: Any) -> None:
        seen.append(instance)

    post_init.connect(receiver, sender=Job)
    try:
        ours, raw = _both(sql, {"queue_id": queue_id})
    finally:
        post_init.disconnect(receiver, sender=Job)
    assert len(ours) == 2
    assert [id(job) for job in seen[: len(ours)]] == [id(job) for job in ours]  # not just ==
    _same(ours, raw)


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_column_the_model_does_not_know_is_an_attribute_and_pulls_go_on(
    api: Api, full: str
) -> None:
    """A migration of a newer release added a column while this app server runs the
    older model (a rolling deploy): the expired-lease check's SELECT * gets it. As with
    RawQuerySet it becomes an attribute, and pulls go on."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE queues_job ADD COLUMN added_later integer DEFAULT 7")
    try:
        push(api, full, data={"n": 1})
        ours, raw = _both(_STAR, [])
        assert [job.__dict__["added_later"] for job in ours + raw] == [7, 7]
        assert len(pull(api, full)) == 1
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE queues_job DROP COLUMN added_later")


@postgres_only
def test_bound_objects_refuse_rows_without_the_pk() -> None:
    with pytest.raises(ValueError, match="need its primary key"):
        statements.bound_objects(Job, "SELECT state FROM queues_job", {})
