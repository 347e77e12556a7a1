"""``manage.py rotate_encryption_keys``: re-seal every job payload, every schedule's
template and every webhook's signing secret under the primary (first) key of
ENCRYPTION_KEYS.

To rotate: put the new key first in ENCRYPTION_KEYS, keep the old ones after it, deploy,
run this command, and remove an old key only once the report shows no value under it.
It works in batches, each its own transaction and audit event (``keys.rotate``,
``command:rotate_encryption_keys``); interrupted, it is simply run again: values already
under the primary key are left alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from compliance.audit import Actor
from queues.services import ResealedSchedules, jobs_reseal, schedules_reseal, webhooks_reseal
from security.encryption import DecryptionFailed, keyring


class Command(BaseCommand):
    help = (
        "Re-encrypt every job's data, result and errors, every schedule's template and "
        "every webhook's secret under the first key of ENCRYPTION_KEYS, in batches; safe "
        "to interrupt and run again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size",
            type=int,
            default=500,
            help="jobs (or schedules) per transaction (default 500)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        size = options["batch_size"]
        if not 1 <= size <= 10_000:
            raise CommandError("--batch-size must be 1 to 10000")
        actor = Actor.command("rotate_encryption_keys")
        primary = keyring().primary
        scanned = jobs = values = 0
        before: dict[str, int] = {}
        after = None
        try:
            while True:
                batch = jobs_reseal(after=after, limit=size, actor=actor)
                scanned += batch.jobs_scanned
                jobs += batch.jobs_changed
                values += batch.values_changed
                _add(before, batch.found)
                if options["verbosity"] > 1 and batch.jobs_changed:
                    self.stdout.write(f"  re-encrypted {batch.jobs_changed} job(s) up to {after}")
                if batch.last_id is None:
                    break
                after = batch.last_id
            schedules_scanned, schedules = _each_batch(schedules_reseal, size, actor, before)
            hooks_scanned, hooks = _each_batch(webhooks_reseal, size, actor, before)
            values += schedules + hooks
        except DecryptionFailed as exc:
            raise CommandError(
                f"{exc}. Nothing in this batch was changed; add the key back to "
                f"ENCRYPTION_KEYS (after the primary) and run again."
            ) from None
        found = ", ".join(f"{key}: {count}" for key, count in sorted(before.items())) or "none"
        self.stdout.write(
            f"Scanned {scanned} job(s), {schedules_scanned} schedule(s) and "
            f"{hooks_scanned} webhook(s); "
            f"values by key before: {found}."
        )
        self.stdout.write(
            f"Re-encrypted {values} value(s) in {jobs} job(s), {schedules} schedule(s) and "
            f"{hooks} webhook secret(s) under key {primary!r}."
        )
        self.stdout.write(
            "Before removing an old key, make sure every app server runs with this keyring "
            "and run this command again: it must report values under the new key only."
        )


def _each_batch(
    reseal: Callable[..., ResealedSchedules], size: int, actor: Actor, before: dict[str, int]
) -> tuple[int, int]:
    """Every batch of one kind of sealed row: (scanned, changed)."""
    scanned = changed = 0
    after = None
    while True:
        batch = reseal(after=after, limit=size, actor=actor)
        scanned += batch.scanned
        changed += batch.changed
        _add(before, batch.found)
        if batch.last_id is None:
            return scanned, changed
        after = batch.last_id


def _add(total: dict[str, int], found: dict[str, int]) -> None:
    for key_id, count in found.items():
        total[key_id] = total.get(key_id, 0) + count
