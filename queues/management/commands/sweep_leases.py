"""``manage.py sweep_leases``: return jobs whose lease expired to waiting (as a failed
attempt, or to failed on the last one; a job past its deadline fails with code
``timeout`` and waits for its backoff) and mark waiting jobs past their ttl expired.
Each batch is one audit event per kind listing its jobs, with ``command:sweep_leases``
as actor."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from compliance.audit import Actor
from queues.pulling import sweep


class Command(BaseCommand):
    help = (
        "Requeue jobs whose lease expired or that ran past their timeout (each counts as "
        "a failed attempt; a timeout is retried after the job's backoff) and mark "
        "waiting jobs past their ttl as expired. Works in batches until none are left."
    )

    def handle(self, *args: Any, **options: Any) -> str:
        requeued, expired = sweep(actor=Actor.command("sweep_leases"))
        return f"Requeued {requeued} job(s) with expired leases; expired {expired} job(s)."
