"""Inserting a batch of new jobs.

On PostgreSQL the rows go in through ``COPY ... FROM STDIN``, psycopg's C-level path.
Django 5.2's ``bulk_create`` there sends rows as UNNEST arrays whose quoting in Python
took ~70% of a 1000-job batch push; a hand-built multi-row VALUES was slower still
(psycopg parses each 27,000-placeholder statement in Python). On SQLite ``bulk_create``
is a plain multi-row INSERT and stays.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from django.db import connection, models

from security.fields import SealedJSONField

from .models import Job

_FIELDS = list(Job._meta.concrete_fields)


def _to_copy(field: models.Field[Any, Any]) -> Callable[[Job], Any]:
    """The COPY value of ``field`` for a job (text format; psycopg escapes it)."""
    attname = field.attname
    if isinstance(field, SealedJSONField):
        # Sealed with the job's id by the field itself, as save() would.
        def sealed(job: Job) -> bytes | None:
            value = field.pre_save(job, True)
            return None if value is None else value.blob

        return sealed
    if isinstance(field, models.JSONField):
        return lambda job: None if (value := getattr(job, attname)) is None else json.dumps(value)
    return lambda job: getattr(job, attname)


_ROW = [_to_copy(field) for field in _FIELDS]
_COPY = "COPY {table} ({columns}) FROM STDIN"


def insert_jobs(jobs: Sequence[Job]) -> None:
    """INSERT new, unsaved jobs (ids come from the model default) in the caller's
    transaction. Constraint violations surface as Django's IntegrityError."""
    if not jobs:
        return
    if connection.vendor != "postgresql" or len(jobs) == 1:
        Job.objects.bulk_create(jobs)
        return
    sql = _COPY.format(
        table=connection.ops.quote_name(Job._meta.db_table),
        columns=", ".join(connection.ops.quote_name(field.column) for field in _FIELDS),
    )
    with (
        connection.cursor() as cursor,
        connection.wrap_database_errors,
        cursor.cursor.copy(sql) as copy,
    ):
        for job in jobs:
            copy.write_row([convert(job) for convert in _ROW])
    for job in jobs:
        job._state.adding = False
        job._state.db = connection.alias
