"""``manage.py sweep_leases``: return jobs whose lease expired to waiting (as a failed
attempt, or to failed on the last one) and mark waiting jobs past their ttl expired."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from compliance.audit import Actor, audit_record
from queues.services import jobs_expire_ttl, leases_requeue_expired


class Command(BaseCommand):
    help = (
        "Requeue jobs whose lease expired (each counts as a failed attempt) and mark "
        "waiting jobs past their ttl as expired. Works in batches until none are left."
    )

    def handle(self, *args: Any, **options: Any) -> str:
        requeued = expired = 0
        while batch := leases_requeue_expired():
            requeued += batch
        while batch := jobs_expire_ttl():
            expired += batch
        with transaction.atomic():
            audit_record(
                actor=Actor(name="command:sweep_leases"),
                action="sweep_leases",
                status=200,
                details={"requeued": requeued, "expired": expired},
            )
        return f"Requeued {requeued} job(s) with expired leases; expired {expired} job(s)."
