"""Writing new jobs together with the audit event that records them.

On PostgreSQL a push of one job is one statement: the job's INSERT and the event's in
one ``WITH``, with the wake-up check (queues.wakeup) in its ``SELECT``; outside a
transaction (the API) that is one round trip and one commit. A batch's rows go in
through ``COPY ... FROM STDIN``, psycopg's C-level path (Django 5.2's ``bulk_create``
sends rows as UNNEST arrays whose quoting in Python took ~70% of a 1000-job batch push;
a hand-built multi-row VALUES was slower still), then the event and the check as one
statement, in one transaction. On SQLite ``bulk_create`` and the event's INSERT run in
one transaction.

A job with an idempotency key goes in the same way, in one statement (``insert_keyed_job``,
PostgreSQL): its INSERT gives way (``ON CONFLICT DO NOTHING``) to an unfinished job of
its queue that holds the key (job_key_unfinished_uniq), and then the event and the
wake-up are not written either, and the caller looks that job up. A lookup before
every keyed insert, in a transaction of its own (BEGIN, SELECT, SAVEPOINT, the insert,
RELEASE, COMMIT: six round trips for one), made a keyed push 0.53 to 0.83x as fast as an
unkeyed one (bench/run.py --quick).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from functools import cache
from typing import Any

import orjson
from django.db import connection, models, transaction

from compliance.audit import audit_insert, audit_inserted
from compliance.audit.models import AuditEvent
from kernel.rows import insert_columns, insert_row
from kernel.statements import bound_cursor
from security.fields import SealedJSONField

from .models import UNFINISHED, Job

_FIELDS = list(Job._meta.concrete_fields)


def _json(value: Any) -> str:
    """A JSON column's text: orjson's (2.2 us -> 0.2 us for a backoff), and the json
    module's for what orjson refuses (integers past 64 bits, lone surrogates, keys that
    are not strings), so a value goes in or is refused as before. The columns written
    this way (backoff, tags) hold parsed and checked JSON: never a NaN or an infinity,
    which orjson would write as null."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value)


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
        return lambda job: None if (value := getattr(job, attname)) is None else _json(value)
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


# The arbiter of a keyed insert: job_key_unfinished_uniq, named by its columns and its
# predicate (queues.models.Job.Meta); an unfinished job of the queue holding the key.
_KEY_HELD = (
    'ON CONFLICT ("queue_id", "key") WHERE "key" IS NOT NULL AND "state" IN ({states}) '
    "DO NOTHING RETURNING 1"
).format(states=", ".join(f"'{state}'" for state in UNFINISHED))


@cache
def _event_if_inserted() -> str:
    """The event's INSERT as ``INSERT ... SELECT ... FROM job``: one row when the keyed
    job went in, none when it gave way."""
    _, sql = insert_columns(AuditEvent)
    head, values = sql.rsplit(" VALUES (", 1)
    return f"{head} SELECT {values.removesuffix(')')} FROM job RETURNING id"  # noqa: S608


def _write_event(
    event: AuditEvent, *, wake: str | None, job: Job | None = None, keyed: bool = False
) -> bool:
    """The event's INSERT; on PostgreSQL after ``job``'s in the same statement if given,
    with the wake-up check when ``wake`` names a queue with new ready work. ``keyed``:
    the job gives way to an unfinished one holding its key, and then nothing is written
    (False)."""
    sql, params = audit_insert(event)
    postgresql = connection.vendor == "postgresql"
    if postgresql:
        parts = [f"event AS ({_event_if_inserted() if keyed else sql})"]
        if job is not None:
            job_sql, job_params = insert_row(job)
            parts.insert(0, f"job AS ({job_sql} {_KEY_HELD})" if keyed else f"job AS ({job_sql})")
            params = [*job_params, *params]
        check = "false"
        if wake is not None:
            check = "flashq_wake(%s)"
            params.append(wake)
        sql = f"WITH {', '.join(parts)} SELECT id, {check} FROM event"  # noqa: S608
    with bound_cursor(prepare=True) if postgresql else connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if not rows:
        return False
    audit_inserted(event, rows[0][0])
    return True


def insert_keyed_job(job: Job, *, event: AuditEvent, wake: str | None) -> bool:
    """PostgreSQL: INSERT a new job that has a key, and ``event``, in one statement,
    unless an unfinished job of its queue holds the key: then nothing is written and
    the answer is False."""
    assert connection.vendor == "postgresql" and job.key is not None
    # One statement: its own transaction outside one (the API), a savepoint inside one.
    with transaction.atomic() if connection.in_atomic_block else nullcontext():
        inserted = _write_event(event, wake=wake, job=job, keyed=True)
    if inserted:
        job._state.adding = False
        job._state.db = connection.alias
    return inserted


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
