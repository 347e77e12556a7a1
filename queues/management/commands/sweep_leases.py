"""``manage.py sweep_leases``: return jobs whose lease expired to waiting (as a failed
attempt, or to failed on the last one) and mark waiting jobs past their ttl expired.
Each batch is one audit event listing its jobs, with ``command:sweep_leases`` as actor."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from compliance.audit import Actor
from queues.pulling import jobs_expire_ttl, leases_requeue_expired


class Command(BaseCommand):
    help = (
        "Requeue jobs whose lease expired (each counts as a failed attempt) and mark "
        "waiting jobs past their ttl as expired. Works in batches until none are left."
    )

    def handle(self, *args: Any, **options: Any) -> str:
        actor = Actor.command("sweep_leases")
        requeued = expired = 0
        while batch := leases_requeue_expired(actor=actor):
            requeued += batch
        while batch := jobs_expire_ttl(actor=actor):
            expired += batch
        return f"Requeued {requeued} job(s) with expired leases; expired {expired} job(s)."
