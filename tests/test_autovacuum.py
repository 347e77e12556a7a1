"""PostgreSQL's autovacuum: the tables every state change rewrites are vacuumed at 2%
changed (queues migrations 0015 and 0027), and ``manage.py check --database`` (and
every ``migrate``) warns when the server's autovacuum is off (queues.checks)."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import connection

from queues.checks import autovacuum_warning, check_autovacuum

from .support import postgres_only

pytestmark = pytest.mark.django_db


def _options(table: str) -> dict[str, str]:
    with connection.cursor() as cursor:
        sql = "SELECT coalesce(reloptions, '{}') FROM pg_class WHERE relname = %s"
        cursor.execute(sql, [table])
        (options,) = cursor.fetchone()
    return dict(option.split("=", 1) for option in options)


@postgres_only
@pytest.mark.parametrize("table", ["queues_job", "queues_jobevent"])
def test_the_churning_tables_are_vacuumed_at_two_percent(table: str) -> None:
    options = _options(table)
    assert options["autovacuum_vacuum_scale_factor"] == "0.02"
    assert options["autovacuum_vacuum_threshold"] == "1000"
    assert options["autovacuum_analyze_scale_factor"] == "0.02"


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"autovacuum": "off", "track_counts": "on"}, ["autovacuum is off"]),
        ({"autovacuum": "on", "track_counts": "off"}, ["track_counts is off"]),
        ({"autovacuum": "off"}, ["autovacuum is off", "track_counts is unknown"]),
    ],
)
def test_autovacuum_that_cannot_run_is_a_warning_naming_why(
    settings: dict[str, str], named: list[str]
) -> None:
    [warning] = autovacuum_warning("default", settings)
    assert warning.id == "flashq.W001" and "'default'" in warning.msg
    assert all(part in warning.msg for part in named)
    assert "autovacuum = on and track_counts = on" in str(warning.hint)


def test_no_warning_when_autovacuum_can_run() -> None:
    assert autovacuum_warning("default", {"autovacuum": "on", "track_counts": "on"}) == []


@postgres_only
def test_the_check_reads_the_server_s_setting() -> None:
    found = check_autovacuum(None, databases=["default"])
    assert [message.id for message in found] == (["flashq.W001"] if _off() else [])
    assert check_autovacuum(None, databases=None) == []  # only when a database is named


def test_manage_py_check_runs_it_for_a_named_database(capsys: pytest.CaptureFixture[str]) -> None:
    call_command("check", "--database", "default")
    expected = "flashq.W001" if connection.vendor == "postgresql" and _off() else None
    out = capsys.readouterr()
    assert (expected in out.out + out.err) if expected else "flashq.W001" not in out.out + out.err


def _off() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('autovacuum'), current_setting('track_counts')")
        return bool(cursor.fetchone() != ("on", "on"))
