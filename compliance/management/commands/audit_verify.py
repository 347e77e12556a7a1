"""``manage.py audit_verify``: recompute the audit trail's hash chain. Exits non-zero,
naming the first broken event, if any event was edited, deleted, inserted or reordered."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from compliance.chain import verify


class Command(BaseCommand):
    help = "Verify the audit trail's hash chain; non-zero exit on the first broken event."

    def handle(self, *args: Any, **options: Any) -> None:
        verdict = verify()
        if verdict.unsealed:
            self.stdout.write(
                f"{verdict.unsealed} event(s) not sealed yet (oldest "
                f"{verdict.oldest_unsealed.isoformat() if verdict.oldest_unsealed else '?'}); "
                "run audit_seal to include them."
            )
        if not verdict.ok:
            raise CommandError(
                f"audit chain BROKEN at event id {verdict.event_id}: {verdict.problem} "
                f"({verdict.checked} event(s) verified before it)"
            )
        self.stdout.write(
            f"audit chain OK: {verdict.checked} sealed event(s) verified from seq "
            f"{verdict.first_seq}."
        )
