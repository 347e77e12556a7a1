"""The job event log (queues.eventmodels) and the triggers that write it.

Every INSERT, UPDATE and DELETE of ``queues_job`` is seen by a trigger that adds one
event per job whose change a subscriber cares about, in the same transaction: a push
(``pushed``), a change of state (``active``, ``completed``, ``failed``, ``cancelled``,
``expired``; ``waiting`` after waiting for other jobs, ``retried`` from anywhere else), a
change of progress (``progress``) and a delete (``removed``). Other updates (heartbeats,
the ``watched`` mark, priority) add nothing. A transaction that set
``flashq.events = 'off'`` (retention's deletes, PostgreSQL only) adds no ``removed``.

On PostgreSQL the triggers run once per statement over its transition tables (one
INSERT ... SELECT whatever the number of rows) and stamp each event with the writing
transaction's id. SQLite's run per row."""

from django.db import migrations, models

# What an UPDATE of a job is, from its old row ``o`` and new row ``n`` (NULL: no event).
KIND = """CASE
    WHEN n.state = o.state THEN
        CASE WHEN n.progress <> o.progress THEN 'progress' END
    WHEN n.state IN ('active', 'completed', 'failed', 'cancelled', 'expired') THEN n.state
    WHEN n.state = 'waiting' AND o.state = 'waiting-children' THEN 'waiting'
    WHEN n.state = 'waiting' THEN 'retried'
END"""

COLUMNS = "txid, at, kind, job_id, queue_id, state, attempts, progress, error_code"
TXID = "pg_current_xact_id()::text::bigint"

POSTGRESQL = f"""
CREATE FUNCTION flashq_events_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO queues_jobevent ({COLUMNS})
    SELECT {TXID}, now(), 'pushed', n.id, n.queue_id, n.state, n.attempts, n.progress,
           n.error_code
    FROM new_rows n ORDER BY n.id;
    RETURN NULL;
END
$$;

CREATE FUNCTION flashq_events_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO queues_jobevent ({COLUMNS})
    SELECT {TXID}, now(), e.kind, n.id, n.queue_id, n.state, n.attempts, n.progress,
           n.error_code
    FROM new_rows n
    JOIN old_rows o ON o.id = n.id
    CROSS JOIN LATERAL (SELECT {KIND} AS kind) e
    WHERE e.kind IS NOT NULL
    ORDER BY n.id;
    RETURN NULL;
END
$$;

CREATE FUNCTION flashq_events_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('flashq.events', true) = 'off' THEN
        RETURN NULL;
    END IF;
    INSERT INTO queues_jobevent ({COLUMNS})
    SELECT {TXID}, now(), 'removed', o.id, o.queue_id, o.state, o.attempts, o.progress,
           o.error_code
    FROM old_rows o ORDER BY o.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER flashq_events_insert AFTER INSERT ON queues_job
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION flashq_events_insert();
CREATE TRIGGER flashq_events_update AFTER UPDATE ON queues_job
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION flashq_events_update();
CREATE TRIGGER flashq_events_delete AFTER DELETE ON queues_job
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION flashq_events_delete();
"""

POSTGRESQL_DROP = """
DROP TRIGGER IF EXISTS flashq_events_insert ON queues_job;
DROP TRIGGER IF EXISTS flashq_events_update ON queues_job;
DROP TRIGGER IF EXISTS flashq_events_delete ON queues_job;
DROP FUNCTION IF EXISTS flashq_events_insert();
DROP FUNCTION IF EXISTS flashq_events_update();
DROP FUNCTION IF EXISTS flashq_events_delete();
"""

# SQLite stores datetimes as ISO text; strftime gives milliseconds, which Django reads.
SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now')"

SQLITE = [
    f"""CREATE TRIGGER flashq_events_insert AFTER INSERT ON queues_job BEGIN
        INSERT INTO queues_jobevent ({COLUMNS})
        VALUES (0, {SQLITE_NOW}, 'pushed', NEW.id, NEW.queue_id, NEW.state, NEW.attempts,
                NEW.progress, NEW.error_code);
    END""",
    f"""CREATE TRIGGER flashq_events_update AFTER UPDATE OF state, progress ON queues_job
    WHEN OLD.state IS NOT NEW.state OR OLD.progress IS NOT NEW.progress BEGIN
        INSERT INTO queues_jobevent ({COLUMNS})
        SELECT 0, {SQLITE_NOW}, e.kind, NEW.id, NEW.queue_id, NEW.state, NEW.attempts,
               NEW.progress, NEW.error_code
        FROM (SELECT {KIND.replace("n.", "NEW.").replace("o.", "OLD.")} AS kind) e
        WHERE e.kind IS NOT NULL;
    END""",
    f"""CREATE TRIGGER flashq_events_delete AFTER DELETE ON queues_job BEGIN
        INSERT INTO queues_jobevent ({COLUMNS})
        VALUES (0, {SQLITE_NOW}, 'removed', OLD.id, OLD.queue_id, OLD.state, OLD.attempts,
                OLD.progress, OLD.error_code);
    END""",
]

SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS flashq_events_insert",
    "DROP TRIGGER IF EXISTS flashq_events_update",
    "DROP TRIGGER IF EXISTS flashq_events_delete",
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
    dependencies = [("queues", "0020_job_depth")]

    operations = [
        migrations.CreateModel(
            name="EventLogMark",
            fields=[
                (
                    "id",
                    models.PositiveSmallIntegerField(default=1, primary_key=True, serialize=False),
                ),
                ("txid", models.BigIntegerField(default=0)),
                ("event_id", models.BigIntegerField(default=0)),
            ],
        ),
        migrations.CreateModel(
            name="JobEvent",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("txid", models.BigIntegerField(default=0)),
                ("at", models.DateTimeField()),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("pushed", "Pushed"),
                            ("waiting", "Waiting"),
                            ("active", "Active"),
                            ("progress", "Progress"),
                            ("completed", "Completed"),
                            ("failed", "Failed"),
                            ("retried", "Retried"),
                            ("cancelled", "Cancelled"),
                            ("expired", "Expired"),
                            ("removed", "Removed"),
                            ("reset", "Reset"),
                        ],
                        max_length=16,
                    ),
                ),
                ("job_id", models.UUIDField()),
                ("queue_id", models.IntegerField()),
                ("state", models.CharField(max_length=16)),
                ("attempts", models.IntegerField()),
                ("progress", models.SmallIntegerField()),
                ("error_code", models.CharField(blank=True, default="", max_length=64)),
            ],
            options={
                "indexes": [
                    models.Index(fields=["txid", "id"], name="jobevent_order_idx"),
                    models.Index(fields=["at"], name="jobevent_at_idx"),
                ],
            },
        ),
        migrations.RunPython(create, drop),
    ]
