"""The job event log's triggers (0021), corrected:

- a finished flow parent retried goes back to ``waiting-children``: that is ``retried``
  too (0021 wrote nothing for it, so streams and webhooks never heard of the retry);
- jobs of the engine's internal queues (``_flashq.``, webhook deliveries) write no
  events: no subscriber may see them, and three rows per delivery would crowd the
  log's row cap and the readers.

The functions (PostgreSQL) are replaced in place; SQLite's triggers are dropped and made
again. Reversing restores 0021's."""

# The SQL is built from this module's constants only, never from input.
# ruff: noqa: S608

from django.db import migrations

OLD = __import__("importlib").import_module("queues.migrations.0021_job_events")

KIND = """CASE
    WHEN n.state = o.state THEN
        CASE WHEN n.progress <> o.progress THEN 'progress' END
    WHEN n.state IN ('active', 'completed', 'failed', 'cancelled', 'expired') THEN n.state
    WHEN n.state = 'waiting' AND o.state = 'waiting-children' THEN 'waiting'
    WHEN n.state IN ('waiting', 'waiting-children') THEN 'retried'
END"""

COLUMNS = OLD.COLUMNS
TXID = OLD.TXID
# Whether the job ``r`` belongs to an internal queue (kernel.limits.INTERNAL_QUEUE_PREFIX).
INTERNAL = (
    "EXISTS (SELECT 1 FROM queues_queue q WHERE q.id = {r}.queue_id "
    "AND substr(q.name, 1, 8) = '_flashq.')"
)

POSTGRESQL = f"""
CREATE OR REPLACE FUNCTION flashq_events_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO queues_jobevent ({COLUMNS})
    SELECT {TXID}, now(), 'pushed', n.id, n.queue_id, n.state, n.attempts, n.progress,
           n.error_code
    FROM new_rows n WHERE NOT {INTERNAL.format(r="n")} ORDER BY n.id;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION flashq_events_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO queues_jobevent ({COLUMNS})
    SELECT {TXID}, now(), e.kind, n.id, n.queue_id, n.state, n.attempts, n.progress,
           n.error_code
    FROM new_rows n
    JOIN old_rows o ON o.id = n.id
    CROSS JOIN LATERAL (SELECT {KIND} AS kind) e
    WHERE e.kind IS NOT NULL AND NOT {INTERNAL.format(r="n")}
    ORDER BY n.id;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION flashq_events_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('flashq.events', true) = 'off' THEN
        RETURN NULL;
    END IF;
    INSERT INTO queues_jobevent ({COLUMNS})
    SELECT {TXID}, now(), 'removed', o.id, o.queue_id, o.state, o.attempts, o.progress,
           o.error_code
    FROM old_rows o WHERE NOT {INTERNAL.format(r="o")} ORDER BY o.id;
    RETURN NULL;
END
$$;
"""

SQLITE_NOW = OLD.SQLITE_NOW

SQLITE = [
    f"""CREATE TRIGGER flashq_events_insert AFTER INSERT ON queues_job
    WHEN NOT {INTERNAL.format(r="NEW")} BEGIN
        INSERT INTO queues_jobevent ({COLUMNS})
        VALUES (0, {SQLITE_NOW}, 'pushed', NEW.id, NEW.queue_id, NEW.state, NEW.attempts,
                NEW.progress, NEW.error_code);
    END""",
    f"""CREATE TRIGGER flashq_events_update AFTER UPDATE OF state, progress ON queues_job
    WHEN (OLD.state IS NOT NEW.state OR OLD.progress IS NOT NEW.progress)
        AND NOT {INTERNAL.format(r="NEW")} BEGIN
        INSERT INTO queues_jobevent ({COLUMNS})
        SELECT 0, {SQLITE_NOW}, e.kind, NEW.id, NEW.queue_id, NEW.state, NEW.attempts,
               NEW.progress, NEW.error_code
        FROM (SELECT {KIND.replace("n.", "NEW.").replace("o.", "OLD.")} AS kind) e
        WHERE e.kind IS NOT NULL;
    END""",
    f"""CREATE TRIGGER flashq_events_delete AFTER DELETE ON queues_job
    WHEN NOT {INTERNAL.format(r="OLD")} BEGIN
        INSERT INTO queues_jobevent ({COLUMNS})
        VALUES (0, {SQLITE_NOW}, 'removed', OLD.id, OLD.queue_id, OLD.state, OLD.attempts,
                OLD.progress, OLD.error_code);
    END""",
]


def _sqlite(schema_editor, statements):
    for statement in OLD.SQLITE_DROP + statements:
        schema_editor.execute(statement)


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRESQL)
    else:
        _sqlite(schema_editor, SQLITE)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            OLD.POSTGRESQL.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION").split(
                "CREATE TRIGGER"
            )[0]
        )
    else:
        _sqlite(schema_editor, OLD.SQLITE)


class Migration(migrations.Migration):
    dependencies = [("queues", "0022_webhooks")]

    operations = [migrations.RunPython(forwards, backwards)]
