"""Job.depth: how deep a job waits on others (kernel.limits.MAX_WAIT_DEPTH).

On PostgreSQL (11+) a column with a constant default is added without rewriting the
table, but a CHECK added with it (a PositiveSmallIntegerField's ``depth >= 0``) is
verified by scanning every row under the ADD's ACCESS EXCLUSIVE lock: pushes and pulls
would wait for a scan of the whole job table. So the column goes in first, in its own
short transaction (the migration is not atomic), and the CHECK is added NOT VALID and
validated afterwards, which takes a lock that lets reads and writes go on. Elsewhere
(SQLite) the field is added as Django adds it.

Rows there already get 0, as if they waited for nothing: dependencies (0019) ship in the
same release, so none waits on another job yet."""

from django.db import migrations, models

POSTGRESQL_ADD = [
    'ALTER TABLE "queues_job" ADD COLUMN "depth" smallint DEFAULT 0 NOT NULL',
    'ALTER TABLE "queues_job" ALTER COLUMN "depth" DROP DEFAULT',
    'ALTER TABLE "queues_job" ADD CONSTRAINT "queues_job_depth_check" CHECK ("depth" >= 0) '
    "NOT VALID",
    'ALTER TABLE "queues_job" VALIDATE CONSTRAINT "queues_job_depth_check"',
]


def _field():
    field = models.PositiveSmallIntegerField(default=0, editable=False)
    field.set_attributes_from_name("depth")
    return field


def add(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in POSTGRESQL_ADD:
            schema_editor.execute(statement)
    else:
        schema_editor.add_field(apps.get_model("queues", "Job"), _field())


def remove(apps, schema_editor):
    schema_editor.remove_field(apps.get_model("queues", "Job"), _field())


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("queues", "0019_flows_dependencies"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name="job",
                    name="depth",
                    field=models.PositiveSmallIntegerField(default=0, editable=False),
                ),
            ],
            database_operations=[migrations.RunPython(add, remove)],
        ),
    ]
