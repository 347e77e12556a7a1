"""``manage.py audit_seal [--anchor-file PATH]``: seal every committed, unsealed audit
event into the keyed hash chain now (the scheduler does the same every
AUDIT_SEAL_SECONDS). Each batch's new head is logged on ``flashq.audit`` and, with
``--anchor-file`` (or AUDIT_ANCHOR_FILE), appended to that file as one JSON line."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from compliance.audit.chain import seal_all


class Command(BaseCommand):
    help = "Seal all committed audit events into the HMAC-SHA256 chain (AUDIT_CHAIN_KEY)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--anchor-file",
            default="",
            help="append the chain's head (seq, hash, key id, time) after each batch to "
            "this file, one JSON line each (default: AUDIT_ANCHOR_FILE)",
        )

    def handle(self, *args: Any, **options: Any) -> str:
        return f"Sealed {seal_all(anchor_file=options['anchor_file'])} audit event(s)."
