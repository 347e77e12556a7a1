"""``manage.py audit_seal``: seal every committed, unsealed audit event into the hash
chain now (the scheduler does the same every AUDIT_SEAL_SECONDS)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from compliance.chain import seal_all


class Command(BaseCommand):
    help = "Seal all committed audit events into the SHA-256 hash chain."

    def handle(self, *args: Any, **options: Any) -> str:
        return f"Sealed {seal_all()} audit event(s)."
