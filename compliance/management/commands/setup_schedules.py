"""``manage.py setup_schedules``: create or update (idempotently) the django-q2
schedules: audit sealing every AUDIT_SEAL_MINUTES, the lease sweeper every minute, the
repeatable jobs' safety net every minute (``manage.py run_scheduler`` fires them within
the second; this catches what it misses while it is down), the job event log's pruning
and the per-minute rollup's folding and pruning every minute, and the retention run
daily at 03:17 UTC. ``manage.py qcluster`` then runs them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils import timezone
from django_q.models import Schedule

SCHEDULES = {
    "flashq: seal audit events": ("compliance.tasks.seal_audit", "AUDIT_SEAL_MINUTES"),
    "flashq: sweep expired leases": ("compliance.tasks.sweep_leases", 1),
    "flashq: fire due schedules": ("compliance.tasks.fire_schedules", 1),
    "flashq: prune the job event log": ("compliance.tasks.prune_events", 1),
    "flashq: fold and prune the job rollup": ("compliance.tasks.prune_rollup", 1),
    "flashq: retention": ("compliance.tasks.run_retention", None),
}


def _first_daily_run() -> Any:
    now = timezone.now()
    run = now.replace(hour=3, minute=17, second=0, microsecond=0)
    return run if run > now else run + timedelta(days=1)


class Command(BaseCommand):
    help = "Create or update flashQ's django-q2 schedules (idempotent)."

    def handle(self, *args: Any, **options: Any) -> str:
        for name, (func, every) in SCHEDULES.items():
            minutes = getattr(settings, every) if isinstance(every, str) else every
            values: dict[str, Any] = {"func": func, "args": None, "kwargs": None, "repeats": -1}
            if minutes is None:
                values |= {"schedule_type": Schedule.DAILY, "minutes": None}
            else:
                values |= {"schedule_type": Schedule.MINUTES, "minutes": minutes}
            schedule, created = Schedule.objects.update_or_create(name=name, defaults=values)
            if created and minutes is None:
                schedule.next_run = _first_daily_run()
                schedule.save(update_fields=["next_run"])
            self.stdout.write(f"{'created' if created else 'updated'}: {name}")
        return f"{len(SCHEDULES)} schedule(s) in place."
