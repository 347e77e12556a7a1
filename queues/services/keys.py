"""Re-sealing job payloads and schedule templates under the primary encryption key
(``rotate_encryption_keys``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from compliance.audit import Action, Actor, audit_record
from security.encryption import keyring
from security.fields import Stored, bulk_update_sealed

from ..models import Job, Schedule, Webhook

SEALED_FIELDS = ("data", "result", "error", "errors")


@dataclass(frozen=True)
class Resealed:
    """One batch of key rotation. ``last_id`` is where the next batch starts (None:
    the table is done); ``found`` counts the stored values by the key that sealed them
    before this batch."""

    last_id: uuid.UUID | None
    jobs_scanned: int
    jobs_changed: int
    values_changed: int
    found: dict[str, int]


def jobs_reseal(*, after: uuid.UUID | None, limit: int, actor: Actor) -> Resealed:
    """Re-seal under the primary key every payload value of the next ``limit`` jobs
    (in id order, after ``after``) that another key sealed, in one transaction with the
    rows locked, so a worker's ack or fail meanwhile is neither lost nor overwritten.
    Values already under the primary key are left alone: a rerun after an interruption
    only does what is left. A value whose key is gone raises DecryptionFailed (naming
    the job) and the batch changes nothing."""
    primary = keyring().primary
    with transaction.atomic():
        rows = Job.objects.order_by("id").only("id", *SEALED_FIELDS)
        if after is not None:
            rows = rows.filter(id__gt=after)
        jobs = list(rows.select_for_update(no_key=True)[:limit])
        found: dict[str, int] = {}
        changed: list[Job] = []
        values_changed = 0
        for job in jobs:
            stale = []
            for name in SEALED_FIELDS:
                stored = job.__dict__[name]
                if not isinstance(stored, Stored):
                    continue  # an empty value (NULL) has nothing to re-seal
                found[stored.key_id] = found.get(stored.key_id, 0) + 1
                if stored.key_id != primary:
                    stale.append(name)
            if stale:
                for name in stale:
                    getattr(job, name)  # opened with its old key, sealed again on write
                values_changed += len(stale)
                changed.append(job)
        fields = [
            name
            for name in SEALED_FIELDS
            if any(not isinstance(job.__dict__[name], Stored) for job in changed)
        ]
        if changed:
            # Values of a changed job that were already under the primary key are
            # written again too (as read, the column's bytes unchanged).
            bulk_update_sealed(Job, changed, fields)
            audit_record(
                actor=actor,
                action=Action.KEYS_ROTATE,
                job_ids=[job.id for job in changed],
                details={
                    "jobs": len(changed),
                    "values": values_changed,
                    "to_key": primary,
                    "from_keys": sorted(key for key in found if key != primary),
                },
            )
    return Resealed(
        last_id=jobs[-1].id if len(jobs) == limit else None,
        jobs_scanned=len(jobs),
        jobs_changed=len(changed),
        values_changed=values_changed,
        found=found,
    )


@dataclass(frozen=True)
class ResealedSchedules:
    """One batch of key rotation over schedule templates (their ``data``), as Resealed."""

    last_id: uuid.UUID | None
    scanned: int
    changed: int
    found: dict[str, int]


def _rows_reseal(
    model: type[Schedule] | type[Webhook],
    field: str,
    label: str,
    *,
    after: uuid.UUID | None,
    limit: int,
    actor: Actor,
) -> ResealedSchedules:
    """Re-seal under the primary key ``field`` of each of the next ``limit`` rows of
    ``model`` (in id order, after ``after``) that another key sealed, rows locked, as
    jobs_reseal does for jobs. A value whose key is gone raises DecryptionFailed."""
    primary = keyring().primary
    with transaction.atomic():
        rows = model.objects.order_by("id").only("id", "queue_id", "name", field)
        if after is not None:
            rows = rows.filter(id__gt=after)
        found_rows: list[Any] = list(rows.select_for_update(no_key=True)[:limit])
        found: dict[str, int] = {}
        changed: list[Any] = []
        for row in found_rows:
            stored = row.__dict__[field]
            if not isinstance(stored, Stored):
                continue
            found[stored.key_id] = found.get(stored.key_id, 0) + 1
            if stored.key_id != primary:
                getattr(row, field)  # opened with its old key
                changed.append(row)
        if changed:
            bulk_update_sealed(model, changed, [field])
            audit_record(
                actor=actor,
                action=Action.KEYS_ROTATE,
                details={
                    label: len(changed),
                    "values": len(changed),
                    "to_key": primary,
                    "from_keys": sorted(key for key in found if key != primary),
                    "names": sorted(row.name for row in changed)[:100],
                },
            )
    return ResealedSchedules(
        last_id=found_rows[-1].id if len(found_rows) == limit else None,
        scanned=len(found_rows),
        changed=len(changed),
        found=found,
    )


def schedules_reseal(*, after: uuid.UUID | None, limit: int, actor: Actor) -> ResealedSchedules:
    """Re-seal schedule templates (``data``) under the primary key: a template still
    under an old key would stop firing once that key is retired."""
    return _rows_reseal(Schedule, "data", "schedules", after=after, limit=limit, actor=actor)


def webhooks_reseal(*, after: uuid.UUID | None, limit: int, actor: Actor) -> ResealedSchedules:
    """Re-seal webhook secrets under the primary key: a secret still under an old key
    could no longer sign once that key is retired."""
    return _rows_reseal(Webhook, "secret", "webhooks", after=after, limit=limit, actor=actor)
