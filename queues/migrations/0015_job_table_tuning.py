"""The jobs table under sustained load (issue 10's soak, bench/soak.py):

- Two indexes every insert and every state change had to maintain for nothing: the
  foreign key's own index on ``queue_id`` (every query by queue uses one of the
  composite indexes that start with it, and so does PostgreSQL's check when a queue is
  deleted), and the ``_like`` twin of ``subject``'s (subjects are matched exactly). The
  subject index becomes partial: jobs without a subject are not in it. On PostgreSQL it
  is built CONCURRENTLY, so pushes go on during the build (the drops are quick).
- Autovacuum for a table whose rows are each inserted, updated twice (claim, ack) and
  deleted by retention: PostgreSQL's defaults wait for 20% of the table to be dead
  before vacuuming, which for ten million jobs is two million dead rows. Here 2% (plus
  1000), inserts counted too (5%), statistics refreshed at 2%, and a higher cost limit so
  a vacuum keeps pace with the churn.
- fillfactor stays 100: a claim or an ack changes ``state``, which the partial indexes
  and ``job_queue_state_idx`` cover, so those updates can never be HOT; free space kept
  in each page would not be used by them (the soak's figures are in bench/README.md).
"""

from django.db import migrations, models

TUNE = """
ALTER TABLE queues_job SET (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.05,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_limit = 2000
)
"""
UNTUNE = """
ALTER TABLE queues_job RESET (
    autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold,
    autovacuum_vacuum_insert_scale_factor, autovacuum_analyze_scale_factor,
    autovacuum_vacuum_cost_limit
)
"""


# Built without blocking writes on PostgreSQL (a large jobs table would otherwise stop
# taking pushes for the whole build); the migration is therefore not atomic.
SUBJECT_INDEX = "job_subject_idx ON queues_job (subject) WHERE subject IS NOT NULL"


def create_subject_index(apps, schema_editor):
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(f"CREATE INDEX {concurrently}IF NOT EXISTS {SUBJECT_INDEX}")


def drop_subject_index(apps, schema_editor):
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(f"DROP INDEX {concurrently}IF EXISTS job_subject_idx")


def tune(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(TUNE)


def untune(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(UNTUNE)


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("queues", "0014_wakeup_functions")]

    operations = [
        migrations.AlterField(
            model_name="job",
            name="queue",
            field=models.ForeignKey(
                db_index=False,
                on_delete=models.deletion.PROTECT,
                related_name="jobs",
                to="queues.queue",
            ),
        ),
        migrations.AlterField(
            model_name="job",
            name="subject",
            field=models.CharField(blank=True, max_length=255, null=True),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddIndex(
                    model_name="job",
                    index=models.Index(
                        condition=models.Q(subject__isnull=False),
                        fields=["subject"],
                        name="job_subject_idx",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunPython(create_subject_index, drop_subject_index),
            ],
        ),
        migrations.RunPython(tune, untune),
    ]
