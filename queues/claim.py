"""The claim: one statement that picks the next ready jobs of a queue in priority order
and leases them.

PostgreSQL: ``FOR UPDATE SKIP LOCKED`` in a CTE, so concurrent pullers never wait on or
share a row; the CTE is evaluated once. SQLite: the caller's IMMEDIATE transaction holds
the write lock, so a plain subquery is enough.

Both rely on the partial index ``job_ready_idx`` (queue, priority DESC, run_at, id)
WHERE state = 'waiting'. Delayed jobs (run_at in the future) are skipped by the scan, so
a delayed high-priority job never blocks ready ones.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import connection

from .models import Job

# What a leased job's representation needs (queues.api.representations.job_leased),
# and run_at to order by: the other columns stay deferred, so they are neither sent
# back nor converted (converting every column of 100 rows cost more than the claim).
_RETURNED = (
    "id", "queue_id", "state", "priority", "data", "attempts", "max_attempts", "run_at",
    "created_at", "started_at", "tags", "progress", "lease_id", "lease_owner",
    "lease_seconds", "lease_expires_at", "timeout_ms", "deadline_at", "group_key",
)  # fmt: skip
_COLUMNS = [field.column for field in Job._meta.concrete_fields if field.attname in _RETURNED]

_PICK = """
    SELECT id FROM queues_job
    WHERE queue_id = %(queue_id)s AND state = 'waiting' AND run_at <= %(now)s
      AND (expires_at IS NULL OR expires_at > %(now)s)
    ORDER BY priority DESC, run_at, id
    LIMIT %(count)s
"""

# A job with a timeout gets its deadline, and a lease that never runs past it.
_SET = """
    state = 'active', attempts = {t}attempts + 1, lease_id = {lease},
    lease_owner = %(owner)s, lease_seconds = %(lease_seconds)s,
    deadline_at = CASE WHEN {t}timeout_ms IS NULL THEN NULL ELSE {deadline} END,
    lease_expires_at = CASE WHEN {t}timeout_ms IS NULL THEN %(lease_expires_at)s
        ELSE {least}(%(lease_expires_at)s, {deadline}) END,
    started_at = COALESCE({t}started_at, %(now)s)
"""
_PG_DEADLINE = "%(now)s::timestamptz + j.timeout_ms * interval '1 millisecond'"
# SQLite keeps datetimes as text: now plus the timeout, to the millisecond.
_SQLITE_DEADLINE = (
    "strftime('%%Y-%%m-%%d %%H:%%M:%%f', %(now)s, '+' || (timeout_ms / 1000.0) || ' seconds')"
)

# Both statements are built from constants at import; values go in as parameters.
POSTGRESQL_CLAIM = (
    "WITH picked AS ("  # noqa: S608
    + _PICK
    + " FOR UPDATE SKIP LOCKED) UPDATE queues_job AS j SET "
    + _SET.format(t="j.", lease="gen_random_uuid()", deadline=_PG_DEADLINE, least="LEAST")
    + " FROM picked WHERE j.id = picked.id RETURNING "
    + ", ".join(f"j.{column}" for column in _COLUMNS)
)

SQLITE_CLAIM = (
    "UPDATE queues_job SET "  # noqa: S608
    + _SET.format(t="", lease="lower(hex(randomblob(16)))", deadline=_SQLITE_DEADLINE, least="min")
    + " WHERE id IN ("
    + _PICK
    + ") RETURNING "
    + ", ".join(_COLUMNS)
)


def claim(*, queue_id: int, count: int, lease_seconds: int, owner: str, now: datetime) -> list[Job]:
    """Lease up to ``count`` ready jobs of a queue, with the fields a worker is given
    (the rest deferred). Must run inside a transaction."""
    ops = connection.ops
    params = {
        "queue_id": queue_id,
        "count": count,
        "owner": owner,
        "lease_seconds": lease_seconds,
        "now": ops.adapt_datetimefield_value(now),
        "lease_expires_at": ops.adapt_datetimefield_value(now + timedelta(seconds=lease_seconds)),
    }
    sql = POSTGRESQL_CLAIM if connection.vendor == "postgresql" else SQLITE_CLAIM
    jobs = list(Job.objects.raw(sql, params))
    jobs.sort(key=lambda job: (-job.priority, job.run_at, job.id))
    return jobs
