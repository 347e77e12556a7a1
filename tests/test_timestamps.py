"""PostgreSQL timestamps are read by kernel.timestamps' loader: the values Django's own
loader gives (or the same error), in C where it can."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from hypothesis import given
from hypothesis import strategies as st

from kernel import timestamps
from queues.models import Job, Queue

from .support import postgres_only

pytestmark = [pytest.mark.django_db, postgres_only]


def _loaders() -> tuple[Any, Any]:
    from django.db.backends.postgresql.psycopg_any import (  # type: ignore[import-untyped]
        BaseTzLoader,
    )

    class Django(BaseTzLoader):  # type: ignore[misc]
        timezone = UTC

    connection.ensure_connection()
    oid = connection.connection.adapters.types["timestamptz"].oid
    return timestamps._loader()(oid, connection.connection), Django(oid, connection.connection)


def _as_postgres_writes(moment: datetime) -> bytes:
    """``moment`` as a UTC session's text output shows it."""
    text = moment.strftime("%Y-%m-%d %H:%M:%S").rjust(19, "0")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return f"{text}+00".encode()


def _read(loader: Any, data: bytes | memoryview) -> Any:
    try:
        return loader.load(data)
    except Exception as error:  # compared, not swallowed
        return type(error)


def test_every_connection_reads_timestamps_with_the_fast_loader() -> None:
    connection.ensure_connection()
    oid = connection.connection.adapters.types["timestamptz"].oid
    loader = connection.connection.adapters.get_loader(oid, 0)
    assert loader is timestamps._loader()
    with connection.cursor() as cursor:  # Django's cursor keeps it (its own tz check)
        assert cursor.cursor.adapters.get_loader(oid, 0) is timestamps._loader()
    queue = Queue.objects.create(name="q")
    job = Job.objects.create(queue=queue, data={})
    read = Job.objects.get(id=job.id)
    assert read.created_at == job.created_at and read.created_at.tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        b"2026-12-07 06:00:00+00",
        b"2026-12-07 06:00:00.1+00",
        b"2026-12-07 06:00:00.123456+00",
        b"0001-01-01 00:00:00+00",
        b"9999-12-31 23:59:59.999999+00",
        b"2026-12-07 06:00:00+05:30",  # not a UTC session's: Django's loader reads it
        b"infinity",
        b"-infinity",
        b"0044-03-15 12:00:00+00 BC",
        b"12345-01-01 00:00:00+00",
    ],
)
def test_the_loader_reads_what_django_s_reads(text: bytes) -> None:
    fast, django = _loaders()
    assert _read(fast, text) == _read(django, text)
    assert _read(fast, memoryview(text)) == _read(django, text)


@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)))
def test_any_utc_moment_reads_as_django_reads_it(moment: datetime) -> None:
    fast, django = _loaders()
    text = _as_postgres_writes(moment)
    value = fast.load(text)
    assert value == django.load(text) == moment.replace(tzinfo=UTC)
    assert value.tzinfo is UTC and value - moment.replace(tzinfo=UTC) == timedelta(0)
