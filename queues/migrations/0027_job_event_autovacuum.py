"""PostgreSQL: autovacuum for the job event log (0021), as 0015 tuned it for the jobs
table: vacuumed and analysed at 2% changed (plus 1,000 rows), not PostgreSQL's default
20%. The log gets a row for every state change of every job and is pruned in batches
(queues.events.log); at 20% a log of ten million events would wait for two million
dead rows before a vacuum made their space reusable, and the log's readers would walk
them meanwhile.

Nothing changes on SQLite. Reversing restores PostgreSQL's defaults."""

from django.db import migrations

TABLE = "queues_jobevent"
OPTIONS = {
    "autovacuum_vacuum_scale_factor": "0.02",
    "autovacuum_vacuum_threshold": "1000",
    "autovacuum_analyze_scale_factor": "0.02",
}


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        options = ", ".join(f"{name} = {value}" for name, value in OPTIONS.items())
        schema_editor.execute(f"ALTER TABLE {TABLE} SET ({options})")


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE {TABLE} RESET ({', '.join(OPTIONS)})")


class Migration(migrations.Migration):
    dependencies = [("queues", "0026_plain_labels")]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
