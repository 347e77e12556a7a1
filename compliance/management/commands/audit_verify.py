"""``manage.py audit_verify``: recompute the audit trail's hash chain. Exits non-zero,
naming the first broken event, if any event was edited, deleted, inserted or reordered."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from compliance.chain import verify


class Command(BaseCommand):
    help = "Verify the audit trail's hash chain; non-zero exit on the first broken event."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--head",
            help="SEQ:HASH of a sealed event from the sealer's log (an anchor outside the "
            "database): also catches deleted newest events and a recomputed chain",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        head = None
        if options["head"]:
            seq, _, digest = options["head"].partition(":")
            if not seq.isdigit() or len(digest) != 64:
                raise CommandError("--head is SEQ:HASH, e.g. 1042:3f2a...(64 hex)")
            head = (int(seq), digest)
        verdict = verify(head=head)
        if verdict.unsealed:
            self.stdout.write(
                f"{verdict.unsealed} event(s) not sealed yet (oldest "
                f"{verdict.oldest_unsealed.isoformat() if verdict.oldest_unsealed else '?'}); "
                "run audit_seal to include them."
            )
        if not verdict.ok:
            where = f"event id {verdict.event_id}" if verdict.event_id else "the end"
            raise CommandError(
                f"audit chain BROKEN at {where}: {verdict.problem} "
                f"({verdict.checked} event(s) verified before it)"
            )
        self.stdout.write(
            f"audit chain OK: {verdict.checked} sealed event(s) verified from seq "
            f"{verdict.first_seq}."
        )
