"""Writing new jobs together with the audit event that records them.

On PostgreSQL a push of one job is one statement: the job's INSERT and the event's in
one ``WITH``, with the wake-up check (queues.wakeup) in its ``SELECT``; outside a
transaction (the API) that is one round trip and one commit. A batch's rows go in
through ``COPY ... FROM STDIN``, psycopg's C-level path (Django 5.2's ``bulk_create``
sends rows as UNNEST arrays whose quoting in Python took ~70% of a 1000-job batch push;
a hand-built multi-row VALUES was slower still), then the event and the check as one
statement, in one transaction. On SQLite ``bulk_create`` and the event's INSERT run in
one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

from django.db import connection, models, transaction

from compliance.audit import audit_insert, audit_inserted
from compliance.audit.models import AuditEvent
from kernel.rows import insert_row
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


def _copy_jobs(jobs: Sequence[Job]) -> None:
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


def _write_event(event: AuditEvent, *, wake: str | None, job: Job | None = None) -> None:
    """The event's INSERT; on PostgreSQL after ``job``'s in the same statement if given,
    with the wake-up check when ``wake`` names a queue with new ready work."""
    sql, params = audit_insert(event)
    if connection.vendor == "postgresql":
        parts = [f"event AS ({sql})"]
        if job is not None:
            job_sql, job_params = insert_row(job)
            parts.insert(0, f"job AS ({job_sql})")
            params = [*job_params, *params]
        check = "false"
        if wake is not None:
            check = "flashq_wake(%s)"
            params.append(wake)
        sql = f"WITH {', '.join(parts)} SELECT id, {check} FROM event"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        pk = cursor.fetchall()[0][0]
    audit_inserted(event, pk)


def insert_jobs(jobs: Sequence[Job], *, event: AuditEvent, wake: str | None) -> None:
    """INSERT new, unsaved jobs (ids come from the model default) and ``event``, all or
    nothing; ``wake``: the queue to wake long polls on. Constraint violations surface as
    Django's IntegrityError."""
    if connection.vendor == "postgresql" and len(jobs) <= 1:
        # One statement: its own transaction outside one (the API); a savepoint inside
        # one (the admin, tests), so a refusal leaves the caller's transaction usable.
        with transaction.atomic() if connection.in_atomic_block else nullcontext():
            _write_event(event, wake=wake, job=jobs[0] if jobs else None)
    else:
        with transaction.atomic():
            if connection.vendor == "postgresql":
                _copy_jobs(jobs)
            elif jobs:
                Job.objects.bulk_create(jobs)
            _write_event(event, wake=wake)
    for job in jobs:
        job._state.adding = False
        job._state.db = connection.alias
