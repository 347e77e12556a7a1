"""The claim: one statement that picks the next ready jobs of a queue in priority order
and leases them.

PostgreSQL: ``FOR UPDATE SKIP LOCKED`` in a CTE, so concurrent pullers never wait on or
share a row; the CTE is evaluated once. SQLite: the caller's IMMEDIATE transaction holds
the write lock, so a plain subquery is enough.

Both rely on the partial index ``job_ready_idx`` (queue, priority DESC, run_at, id)
WHERE state = 'waiting'. Delayed jobs (run_at in the future) are skipped by the scan, so
a delayed high-priority job never blocks ready ones.

A queue that has had a grouped job (``Queue.grouped``) is claimed by a grouped variant
of the same statement. A grouped job holds a slot number (``group_slot``) in
1..group_concurrency while active, unique among its group's active jobs: the partial
unique index ``job_group_slot_uniq`` holds the limit, so whatever takes a job out of
``active`` frees its slot with no counter to keep. A ready grouped job j is eligible when
active(g) + ahead(g, j) < group_concurrency, ahead being its group's ready jobs before it
in claim order (counted among the group's first group_concurrency ready jobs, a bounded
probe of ``job_group_ready_idx``; delayed jobs never count). It takes the (ahead+1)-th
slot not held by its group's active jobs, so jobs of a group claimed by one statement, or
by pullers that saw the same snapshot, take different slots. Pullers that saw different
snapshots (a higher-priority job pushed into the group between them) can pick the same
slot: the index refuses the second, which retries in a savepoint.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import IntegrityError, OperationalError, connection, transaction

from kernel.statements import bound_objects

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

_READY = """
    SELECT id FROM queues_job
    WHERE queue_id = %(queue_id)s AND state = 'waiting' AND run_at <= %(now)s
      AND (expires_at IS NULL OR expires_at > %(now)s)
    ORDER BY priority DESC, run_at, id
    LIMIT %(count)s
"""
# A queue never grouped: a grouped job is left alone all the same, for the pull that read
# the queue just before its first grouped push committed (the next pull sees it grouped).
# A filter on a row the scan reads anyway: no cost.
_PICK = _READY.replace("> %(now)s)\n", "> %(now)s)\n      AND group_key IS NULL\n")

# Grouped: a grouped job j (columns of {t}) is eligible when its group's active jobs plus
# its ready jobs ahead of j are fewer than group_concurrency. The ready ones ahead are
# counted among the group's first %(gc)s ready jobs (j is among them when eligible).
_ACTIVE = """(SELECT count(*) FROM queues_job a WHERE a.queue_id = {t}.queue_id
    AND a.group_key = {t}.group_key AND a.state = 'active')"""
_AHEAD = """(SELECT count(*) FROM (SELECT w.id, w.priority, w.run_at FROM queues_job w
      WHERE w.queue_id = {t}.queue_id AND w.group_key = {t}.group_key
        AND w.state = 'waiting' AND w.run_at <= %(now)s
        AND (w.expires_at IS NULL OR w.expires_at > %(now)s)
      ORDER BY w.priority DESC, w.run_at, w.id LIMIT %(gc)s) w
    WHERE w.priority > {t}.priority OR (w.priority = {t}.priority
      AND (w.run_at < {t}.run_at OR (w.run_at = {t}.run_at AND w.id < {t}.id))))"""
# The (ahead+1)-th slot in 1..group_concurrency its group's active jobs do not hold.
_SLOTS = (
    "slots(slot_number) AS (SELECT 1 UNION ALL"
    " SELECT slot_number + 1 FROM slots WHERE slot_number < %(gc)s)"
)
_FREE = """NOT EXISTS (SELECT 1 FROM queues_job h WHERE h.queue_id = {t}.queue_id
      AND h.group_key = {t}.group_key AND h.state = 'active' AND h.group_slot = slot_number)"""
# SQLite refuses a correlated OFFSET: it numbers the free slots instead.
_SQLITE_SLOT = (
    "(SELECT f.slot_number FROM (SELECT slot_number,"  # noqa: S608
    " row_number() OVER (ORDER BY slot_number) AS rn FROM slots WHERE "
    + _FREE
    + ") f WHERE f.rn = 1 + {ahead})"
)
# SQLite: a full group's jobs fail the first test and never pay for the second.
_GROUPED_PICK = _READY.replace(
    "SELECT id FROM queues_job\n    WHERE queue_id",
    "SELECT j.id FROM queues_job j\n    WHERE j.queue_id",
).replace(
    "    ORDER BY",
    "      AND (j.group_key IS NULL OR ({active} < %(gc)s AND {active} + {ahead} < %(gc)s))"
    "\n    ORDER BY".format(active=_ACTIVE.format(t="j"), ahead=_AHEAD.format(t="j")),
)

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


def _picked(slot: str) -> str:
    """The eligible jobs with the slot each takes (none for an ungrouped job)."""
    slot = slot.format(t="j", ahead=_AHEAD.format(t="j"))
    return _GROUPED_PICK.replace(
        "SELECT j.id FROM",
        f"SELECT j.id, CASE WHEN j.group_key IS NULL THEN NULL ELSE {slot} END AS slot FROM",
    )


# PostgreSQL: each ready job's slot, or NULL when it is not eligible, is worked out once
# in a LATERAL subquery (OFFSET 0 keeps the planner from inlining it, which would probe
# twice): the slots its group's active jobs hold (one index-only probe of
# job_group_slot_uniq), then, only if the group is not full, its ready jobs ahead of j,
# then the (ahead+1)-th free slot from generate_series. A full group's backlog at the
# head of the queue costs one probe a row (10,000 such rows: about 25 ms).
_HELD = """coalesce((SELECT array_agg(h.group_slot) FROM queues_job h
      WHERE h.queue_id = j.queue_id AND h.group_key = j.group_key AND h.state = 'active'),
      '{{}}')"""
_PG_GROUP_SLOT = """LATERAL (SELECT CASE WHEN j.group_key IS NULL THEN NULL ELSE (
      SELECT CASE WHEN cardinality(c.held) < %(gc)s THEN (
        SELECT CASE WHEN cardinality(c.held) + d.ahead < %(gc)s THEN (
          SELECT s FROM generate_series(1, %(gc)s) s WHERE s <> ALL (c.held)
          ORDER BY s LIMIT 1 OFFSET d.ahead) END
        FROM (SELECT {ahead} AS ahead OFFSET 0) d) END
      FROM (SELECT {held} AS held OFFSET 0) c) END AS slot OFFSET 0) g""".format(  # noqa: S608
    ahead=_AHEAD.format(t="j"), held=_HELD.format()
)
_PG_GROUPED_PICK = _READY.replace(
    "SELECT id FROM queues_job\n    WHERE queue_id",
    "SELECT j.id, g.slot FROM queues_job j, "  # noqa: S608
    + _PG_GROUP_SLOT
    + "\n    WHERE j.queue_id",
).replace(
    "\n    ORDER BY priority",
    "\n      AND (j.group_key IS NULL OR g.slot IS NOT NULL)\n    ORDER BY priority",
)

# The slot is chosen in the CTE, from the statement's snapshot.
POSTGRESQL_GROUPED_CLAIM = (
    "WITH picked AS ("  # noqa: S608
    + _PG_GROUPED_PICK
    + " FOR UPDATE OF j SKIP LOCKED) UPDATE queues_job AS j SET "
    + _SET.format(t="j.", lease="gen_random_uuid()", deadline=_PG_DEADLINE, least="LEAST")
    + ", group_slot = picked.slot FROM picked WHERE j.id = picked.id RETURNING "
    + ", ".join(f"j.{column}" for column in _COLUMNS)
)

# SQLite: the write lock excludes other claims. The recursive CTE stands in for
# generate_series.
SQLITE_GROUPED_CLAIM = (
    "WITH RECURSIVE "  # noqa: S608
    + _SLOTS
    + " UPDATE queues_job SET "
    + _SET.format(t="", lease="lower(hex(randomblob(16)))", deadline=_SQLITE_DEADLINE, least="min")
    + ", group_slot = picked.slot FROM ("
    + _picked(_SQLITE_SLOT)
    + ") AS picked WHERE queues_job.id = picked.id RETURNING "
    + ", ".join(f"queues_job.{column}" for column in _COLUMNS)
)

# How often a grouped claim that lost a slot to a concurrent one is tried again.
GROUPED_CLAIM_TRIES = 5


def claim(
    *,
    queue_id: int,
    count: int,
    lease_seconds: int,
    owner: str,
    now: datetime,
    group_concurrency: int | None = None,
) -> list[Job]:
    """Lease up to ``count`` ready jobs of a queue, with the fields a worker is given
    (the rest deferred). Must run inside a transaction. ``group_concurrency`` is given
    for a queue that has had grouped jobs: at most that many of a group are active."""
    ops = connection.ops
    params = {
        "queue_id": queue_id,
        "count": count,
        "owner": owner,
        "lease_seconds": lease_seconds,
        "now": ops.adapt_datetimefield_value(now),
        "lease_expires_at": ops.adapt_datetimefield_value(now + timedelta(seconds=lease_seconds)),
    }
    postgresql = connection.vendor == "postgresql"
    if group_concurrency is None:
        jobs = (
            bound_objects(Job, POSTGRESQL_CLAIM, params)
            if postgresql
            else list(Job.objects.raw(SQLITE_CLAIM, params))
        )
    elif not postgresql:
        params["gc"] = group_concurrency
        jobs = list(Job.objects.raw(SQLITE_GROUPED_CLAIM, params))
    else:
        params["gc"] = group_concurrency
        jobs = _grouped_claim_pg(params)
    jobs.sort(key=lambda job: (-job.priority, job.run_at, job.id))
    return jobs


# Two claims that each wait on the other's slot (two groups, taken in opposite order).
DEADLOCK = "40P01"


def _grouped_claim_pg(params: dict[str, object]) -> list[Job]:
    """The grouped claim in a savepoint, again while a concurrent claim that saw another
    snapshot takes the slot it picked (its commit makes the next statement see that).
    After the last try the pull hands out nothing this time."""
    for _ in range(GROUPED_CLAIM_TRIES):
        try:
            with transaction.atomic():
                return bound_objects(Job, POSTGRESQL_GROUPED_CLAIM, params)
        except IntegrityError:
            continue
        except OperationalError as error:
            if getattr(error.__cause__, "sqlstate", None) != DEADLOCK:
                raise
    return []
