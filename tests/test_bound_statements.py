"""The hot statements (kernel.statements) are bound by PostgreSQL and prepared on their
connection after DB_PREPARE_THRESHOLD runs; query logging still shows them with their
values; "off" prepares nothing."""

from __future__ import annotations

import subprocess
import sys
import uuid
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from kernel import statements

from .processes import production_secrets
from .support import Api, postgres_only, pull, push

pytestmark = pytest.mark.django_db


def _prepared() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE NOT from_sql")
        return [row[0] for row in cursor.fetchall()]


@postgres_only
def test_a_push_s_statement_is_prepared_on_its_connection_after_the_threshold(
    api: Api, full: str
) -> None:
    threshold = settings.DATABASES["default"]["OPTIONS"]["prepare_threshold"]
    assert threshold == 5
    for n in range(threshold - 1):
        push(api, full, data={"n": n})
    assert not [s for s in _prepared() if 'INSERT INTO "queues_job"' in s]
    push(api, full, data={"n": "fifth"})
    push(api, full, data={"n": "sixth"})
    [statement] = [s for s in _prepared() if 'INSERT INTO "queues_job"' in s]
    assert "$1" in statement and "fifth" not in statement  # values travel apart


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
    assert len([q for q in bound if "FOR UPDATE SKIP LOCKED" in q]) == 8
    assert not [s for s in _prepared() if "SKIP LOCKED" in s]


@pytest.mark.parametrize(("value", "expected"), [("off", "None"), ("", "None"), ("2", "2")])
def test_db_prepare_threshold_sets_psycopg_s_threshold(value: str, expected: str) -> None:
    env = {
        **production_secrets(),
        "DATABASE_URL": "postgres://flashq@127.0.0.1:5432/flashq",  # never connected
        "DJANGO_SETTINGS_MODULE": "flashq_project.settings.production",
        "DB_PREPARE_THRESHOLD": value,
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
