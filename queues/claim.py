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
    "lease_seconds", "lease_expires_at",
)  # fmt: skip
_COLUMNS = [field.column for field in Job._meta.concrete_fields if field.attname in _RETURNED]

_PICK = """
    SELECT id FROM queues_job
    WHERE queue_id = %(queue_id)s AND state = 'waiting' AND run_at <= %(now)s
      AND (expires_at IS NULL OR expires_at > %(now)s)
    ORDER BY priority DESC, run_at, id
    LIMIT %(count)s
"""

_SET = """
    state = 'active', attempts = {t}attempts + 1, lease_id = {lease},
    lease_owner = %(owner)s, lease_seconds = %(lease_seconds)s,
    lease_expires_at = %(lease_expires_at)s, started_at = COALESCE({t}started_at, %(now)s)
"""

# Both statements are built from constants at import; values go in as parameters.
POSTGRESQL_CLAIM = (
    "WITH picked AS ("  # noqa: S608
    + _PICK
    + " FOR UPDATE SKIP LOCKED) UPDATE queues_job AS j SET "
    + _SET.format(t="j.", lease="gen_random_uuid()")
    + " FROM picked WHERE j.id = picked.id RETURNING "
    + ", ".join(f"j.{column}" for column in _COLUMNS)
)

SQLITE_CLAIM = (
    "UPDATE queues_job SET "  # noqa: S608
    + _SET.format(t="", lease="lower(hex(randomblob(16)))")
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
