"""Job payloads encrypted at rest: data, result, error and errors move to sealed
(AES-256-GCM) columns. Existing rows are sealed under the primary key of
ENCRYPTION_KEYS in batches; the reverse opens them again."""

from typing import Any

from django.db import migrations, models

import security.fields
from security.encryption import unseal
from security.fields import Sealed, Stored

PAYLOADS = {"data": None, "result": None, "error": "", "errors": []}
BATCH = 500


def _batches(Job: Any) -> Any:
    last = None
    while True:
        rows = Job.objects.order_by("pk")
        if last is not None:
            rows = rows.filter(pk__gt=last)
        batch = list(rows[:BATCH])
        if not batch:
            return
        yield batch
        last = batch[-1].pk


def seal_existing(apps: Any, schema_editor: Any) -> None:
    """Each value sealed under the name it will have (data, not sealed_data)."""
    Job = apps.get_model("queues", "Job")
    for batch in _batches(Job):
        for job in batch:
            for name, empty in PAYLOADS.items():
                value = getattr(job, name)
                keep = name == "data" or value != empty
                sealed = Sealed.of(value, pk=job.pk, field=name) if keep else None
                # Put as it is: the field would seal under its temporary name.
                job.__dict__[f"sealed_{name}"] = sealed
        Job.objects.bulk_update(batch, [f"sealed_{name}" for name in PAYLOADS])


def open_existing(apps: Any, schema_editor: Any) -> None:
    Job = apps.get_model("queues", "Job")
    for batch in _batches(Job):
        for job in batch:
            for name, empty in PAYLOADS.items():
                # The raw stored value: the attribute would open it under its
                # temporary name, which is not the name it was sealed for.
                stored = job.__dict__[f"sealed_{name}"]
                if isinstance(stored, Stored):
                    setattr(job, name, unseal(stored.blob, job_id=job.pk, field=name))
                else:
                    setattr(job, name, empty)
        Job.objects.bulk_update(batch, list(PAYLOADS))


class Migration(migrations.Migration):
    dependencies = [
        ("queues", "0008_queue_sensitive_fields"),
    ]

    operations = [
        # Nullable while both columns exist, so the reverse can re-add it to full rows.
        migrations.AlterField(model_name="job", name="data", field=models.JSONField(null=True)),
        migrations.AddField(
            model_name="job",
            name="sealed_data",
            field=security.fields.SealedJSONField(empty=None),
        ),
        migrations.AddField(
            model_name="job",
            name="sealed_result",
            field=security.fields.SealedJSONField(empty=None),
        ),
        migrations.AddField(
            model_name="job",
            name="sealed_error",
            field=security.fields.SealedJSONField(empty=""),
        ),
        migrations.AddField(
            model_name="job",
            name="sealed_errors",
            field=security.fields.SealedJSONField(empty=[]),
        ),
        migrations.RunPython(seal_existing, open_existing, elidable=False),
        migrations.RemoveField(model_name="job", name="data"),
        migrations.RemoveField(model_name="job", name="result"),
        migrations.RemoveField(model_name="job", name="error"),
        migrations.RemoveField(model_name="job", name="errors"),
        migrations.RenameField(model_name="job", old_name="sealed_data", new_name="data"),
        migrations.RenameField(model_name="job", old_name="sealed_result", new_name="result"),
        migrations.RenameField(model_name="job", old_name="sealed_error", new_name="error"),
        migrations.RenameField(model_name="job", old_name="sealed_errors", new_name="errors"),
        migrations.AlterField(
            model_name="job",
            name="data",
            field=security.fields.SealedJSONField(),
        ),
    ]
