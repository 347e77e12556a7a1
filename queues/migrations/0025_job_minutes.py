"""The per-minute rollup (queues.statsmodels.JobMinute), the triggers that write it, and
``Job.failed_at``.

A job's INSERT counts ``pushed`` in the minute of its ``created_at`` (and ``failed`` when
it is born failed: a dependency had failed); a change of its state counts ``completed``
(in the minute of ``finished_at``, with its run time ``finished_at - started_at`` in the
histogram), ``failed`` (in the minute of ``failed_at``) or ``retried`` (back to
``waiting``/``waiting-children`` from anything but ``waiting-children``, as the event
log's ``retried``; in the minute of the change). Counting in the minute of the job's own
column keeps the counts and the job list's filters on that column in step. Deletes
count nothing: the rollup is history. Jobs of the internal ``_flashq.`` queues count
nothing.

On PostgreSQL the triggers run once per statement over its transition tables (one
upsert per queue and minute whatever the number of rows), into the writing backend's
own stripe (``pg_backend_pid()``), so concurrent writers never wait on each other's
row; SQLite's run per row, into stripe 0.

Existing failed jobs get ``failed_at = finished_at``; the rollup starts empty (it is not
rebuilt from the jobs table)."""

# The SQL is built from this module's constants only, never from input.
# ruff: noqa: S608

from django.db import migrations, models

BUCKETS = 24
# Lower bounds (ms) of histogram buckets 1..23; bucket 0 is under 1 ms.
BOUNDS = [2**k for k in range(BUCKETS - 1)]
H = [f"h{k:02}" for k in range(BUCKETS)]
SUMS = ["pushed", "completed", "failed", "retried", "run_ms", *H]
COLUMNS = ", ".join(["queue_id", "minute", "stripe", *SUMS])
INTERNAL = (
    "EXISTS (SELECT 1 FROM queues_queue q WHERE q.id = {r}.queue_id "
    "AND substr(q.name, 1, 8) = '_flashq.')"
)
# What a change of state counts, from the old row ``o`` and the new ``n`` (NULL: nothing).
KIND = """CASE
    WHEN n.state = o.state THEN NULL
    WHEN n.state IN ('completed', 'failed') THEN n.state
    WHEN n.state IN ('waiting', 'waiting-children') AND o.state <> 'waiting-children'
        THEN 'retried'
END"""

BACKFILL = "UPDATE queues_job SET failed_at = finished_at WHERE state = 'failed'"

# -- PostgreSQL -------------------------------------------------------------------------

PG_UPSERT = "ON CONFLICT (queue_id, minute, stripe) DO UPDATE SET " + ", ".join(
    f"{c} = m.{c} + EXCLUDED.{c}" for c in SUMS
)
# Sums the contributions ``c`` (queue_id, minute, kind, ms) per queue and minute.
PG_SUMS = (
    "SELECT c.queue_id, c.minute, pg_backend_pid(), "
    + ", ".join(f"count(*) FILTER (WHERE c.kind = '{k}')" for k in SUMS[:4])
    + ", coalesce(sum(c.ms), 0), "
    + ", ".join(f"count(*) FILTER (WHERE c.bucket = {k})" for k in range(BUCKETS))
)
PG_BUCKET = f"width_bucket(ms, ARRAY{BOUNDS}::bigint[])"
# Internal queues, looked up once per statement (a hashed subplan, whatever the rows).
PG_PUBLIC = (
    "c.queue_id NOT IN "
    "(SELECT q.id FROM queues_queue q WHERE substr(q.name, 1, 8) = '_flashq.')"
)


def _pg_upsert(contributions):
    return f"""
    INSERT INTO queues_jobminute AS m ({COLUMNS})
    {PG_SUMS}
    FROM (SELECT x.*, {PG_BUCKET} AS bucket FROM ({contributions}) x) c
    WHERE {PG_PUBLIC}
    GROUP BY c.queue_id, c.minute
    ORDER BY c.queue_id, c.minute
    {PG_UPSERT};"""


PG_INSERTED = """
    SELECT n.queue_id, date_trunc('minute', n.created_at) AS minute, 'pushed' AS kind,
           NULL::bigint AS ms
    FROM new_rows n
    UNION ALL
    SELECT n.queue_id, date_trunc('minute', coalesce(n.failed_at, now())), 'failed', NULL
    FROM new_rows n WHERE n.state = 'failed'"""

PG_CHANGED = f"""
    SELECT n.queue_id,
           date_trunc('minute', CASE e.kind
               WHEN 'completed' THEN coalesce(n.finished_at, now())
               WHEN 'failed' THEN coalesce(n.failed_at, now())
               ELSE now() END) AS minute,
           e.kind,
           CASE WHEN e.kind = 'completed' THEN greatest(0, floor(
               extract(epoch FROM n.finished_at - n.started_at) * 1000))::bigint END AS ms
    FROM new_rows n
    JOIN old_rows o ON o.id = n.id
    CROSS JOIN LATERAL (SELECT {KIND} AS kind) e
    WHERE n.state <> o.state AND e.kind IS NOT NULL"""

POSTGRESQL = f"""
-- No JIT: the planner sizes transition tables at a guessed 10,000 rows whatever they
-- hold, so the estimate passes jit_above_cost and every statement, a single push or a
-- batch ack of 100 rows alike, compiled its plan first: 55-70 ms of a 60-115 ms trigger
-- (measured with auto_explain); without it, well under a millisecond.
CREATE FUNCTION flashq_minutes_insert() RETURNS trigger LANGUAGE plpgsql
SET jit = off AS $$
BEGIN
{_pg_upsert(PG_INSERTED)}
    RETURN NULL;
END
$$;

CREATE FUNCTION flashq_minutes_update() RETURNS trigger LANGUAGE plpgsql
-- The plan is made once per session, sized by the first call's transition tables: a
-- nested loop over old_rows and new_rows, cheapest for one row, would cost n^2 for a
-- batch ack of n (measured: 130 ms for 1000). A hash or merge join never does.
SET enable_nestloop = off SET jit = off AS $$
BEGIN
    -- Most updates count nothing (a pull's rows become active, a heartbeat or progress
    -- keeps the state): a look at the new rows' states spares them the join.
    IF NOT EXISTS (
        SELECT 1 FROM new_rows
        WHERE state IN ('completed', 'failed', 'waiting', 'waiting-children')
    ) THEN
        RETURN NULL;
    END IF;
{_pg_upsert(PG_CHANGED)}
    RETURN NULL;
END
$$;

CREATE TRIGGER flashq_minutes_insert AFTER INSERT ON queues_job
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION flashq_minutes_insert();
CREATE TRIGGER flashq_minutes_update AFTER UPDATE ON queues_job
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION flashq_minutes_update();
"""

POSTGRESQL_DROP = """
DROP TRIGGER IF EXISTS flashq_minutes_insert ON queues_job;
DROP TRIGGER IF EXISTS flashq_minutes_update ON queues_job;
DROP FUNCTION IF EXISTS flashq_minutes_insert();
DROP FUNCTION IF EXISTS flashq_minutes_update();
"""

# -- SQLite -----------------------------------------------------------------------------

SQLITE_UPSERT = "ON CONFLICT (queue_id, minute, stripe) DO UPDATE SET " + ", ".join(
    f"{c} = {c} + excluded.{c}" for c in SUMS
)
# SQLite keeps datetimes as ISO text; the minute is that text's first 16 characters.
SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now')"


def _sqlite_minute(value):
    return f"strftime('%Y-%m-%d %H:%M:00', {value})"


# julianday() is exact to the millisecond (SQLite's own resolution).
SQLITE_MS = (
    "CAST(round((julianday(NEW.finished_at) - julianday(NEW.started_at)) * 86400000) "
    "AS INTEGER)"
)
SQLITE_BUCKET = (
    "CASE WHEN k.ms IS NULL THEN NULL WHEN k.ms < 1 THEN 0 "
    + " ".join(f"WHEN k.ms < {2 * b} THEN {k + 1}" for k, b in enumerate(BOUNDS[:-1]))
    + f" ELSE {BUCKETS - 1} END"
)


def _sqlite_row(minute, kind):
    """One contribution of ``NEW``: ``kind`` (none when NULL) in ``minute``."""
    counts = ", ".join(f"c.kind = '{k}'" for k in SUMS[:4])
    buckets = ", ".join(f"(c.bucket IS {k})" for k in range(BUCKETS))
    return f"""INSERT INTO queues_jobminute ({COLUMNS})
        SELECT NEW.queue_id, {_sqlite_minute(minute)}, 0, {counts}, coalesce(c.ms, 0),
               {buckets}
        FROM (SELECT k.kind, k.ms, {SQLITE_BUCKET} AS bucket
              FROM (SELECT kind, CASE WHEN kind = 'completed' THEN {SQLITE_MS} END AS ms
                    FROM (SELECT {kind} AS kind)) k) c
        WHERE c.kind IS NOT NULL
        {SQLITE_UPSERT};"""


SQLITE_KIND = KIND.replace("n.", "NEW.").replace("o.", "OLD.")
SQLITE_BORN_FAILED = "CASE WHEN NEW.state = 'failed' THEN 'failed' END"
SQLITE_CHANGED_AT = f"""CASE
    WHEN NEW.state = 'completed' THEN coalesce(NEW.finished_at, {SQLITE_NOW})
    WHEN NEW.state = 'failed' THEN coalesce(NEW.failed_at, {SQLITE_NOW})
    ELSE {SQLITE_NOW}
END"""
SQLITE_FAILED_AT = f"coalesce(NEW.failed_at, {SQLITE_NOW})"
SQLITE = [
    f"""CREATE TRIGGER flashq_minutes_insert AFTER INSERT ON queues_job
    WHEN NOT {INTERNAL.format(r="NEW")} BEGIN
        {_sqlite_row("NEW.created_at", "'pushed'")}
        {_sqlite_row(SQLITE_FAILED_AT, SQLITE_BORN_FAILED)}
    END""",
    f"""CREATE TRIGGER flashq_minutes_update AFTER UPDATE OF state ON queues_job
    WHEN OLD.state IS NOT NEW.state AND NOT {INTERNAL.format(r="NEW")} BEGIN
        {_sqlite_row(SQLITE_CHANGED_AT, SQLITE_KIND)}
    END""",
]

SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS flashq_minutes_insert",
    "DROP TRIGGER IF EXISTS flashq_minutes_update",
]


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRESQL)
    else:
        for statement in SQLITE:
            schema_editor.execute(statement)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRESQL_DROP)
    else:
        for statement in SQLITE_DROP:
            schema_editor.execute(statement)


class Migration(migrations.Migration):

    dependencies = [
        ('queues', '0024_webhook_failures_and_overlap'),
    ]

    operations = [
        migrations.CreateModel(
            name='JobMinute',
            fields=[
                ('pk', models.CompositePrimaryKey('queue_id', 'minute', 'stripe', blank=True, editable=False, primary_key=True, serialize=False)),
                ('queue_id', models.IntegerField()),
                ('minute', models.DateTimeField()),
                ('stripe', models.IntegerField(default=0)),
                ('pushed', models.PositiveIntegerField(default=0)),
                ('completed', models.PositiveIntegerField(default=0)),
                ('failed', models.PositiveIntegerField(default=0)),
                ('retried', models.PositiveIntegerField(default=0)),
                ('run_ms', models.BigIntegerField(default=0)),
                ('h00', models.PositiveIntegerField(default=0)),
                ('h01', models.PositiveIntegerField(default=0)),
                ('h02', models.PositiveIntegerField(default=0)),
                ('h03', models.PositiveIntegerField(default=0)),
                ('h04', models.PositiveIntegerField(default=0)),
                ('h05', models.PositiveIntegerField(default=0)),
                ('h06', models.PositiveIntegerField(default=0)),
                ('h07', models.PositiveIntegerField(default=0)),
                ('h08', models.PositiveIntegerField(default=0)),
                ('h09', models.PositiveIntegerField(default=0)),
                ('h10', models.PositiveIntegerField(default=0)),
                ('h11', models.PositiveIntegerField(default=0)),
                ('h12', models.PositiveIntegerField(default=0)),
                ('h13', models.PositiveIntegerField(default=0)),
                ('h14', models.PositiveIntegerField(default=0)),
                ('h15', models.PositiveIntegerField(default=0)),
                ('h16', models.PositiveIntegerField(default=0)),
                ('h17', models.PositiveIntegerField(default=0)),
                ('h18', models.PositiveIntegerField(default=0)),
                ('h19', models.PositiveIntegerField(default=0)),
                ('h20', models.PositiveIntegerField(default=0)),
                ('h21', models.PositiveIntegerField(default=0)),
                ('h22', models.PositiveIntegerField(default=0)),
                ('h23', models.PositiveIntegerField(default=0)),
            ],
        ),
        migrations.AddField(
            model_name='job',
            name='failed_at',
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddIndex(
            model_name='jobminute',
            index=models.Index(fields=['minute'], name='jobminute_minute_idx'),
        ),
        # Before its index: the backfill then writes no index entries one by one.
        migrations.RunSQL(BACKFILL, migrations.RunSQL.noop),
        migrations.AddIndex(
            model_name='job',
            index=models.Index(condition=models.Q(('failed_at__isnull', False)), fields=['queue', 'failed_at'], name='job_failed_at_idx'),
        ),
        migrations.RunPython(create, drop),
    ]
