"""``manage.py run_scheduler``: the process that fires repeatable jobs. It fires every
due schedule (queues.services.schedules_fire), sleeps until the earliest next run (at
most a second, so a schedule saved meanwhile is seen), and stops cleanly on SIGTERM or
SIGINT, after the schedule it is firing has committed. Any number may run beside each
other and beside the django-q2 safety net (compliance.tasks.fire_schedules): each tick
still makes exactly one job. ``--once`` fires what is due and exits."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import InterfaceError, OperationalError, close_old_connections
from django.utils import timezone

from compliance.audit import Actor
from queues.services import earliest_due, schedules_fire

logger = logging.getLogger("flashq.schedules")

ACTOR = Actor.system("scheduler")
MAX_SLEEP_SECONDS = 1.0
BATCH = 100


class Command(BaseCommand):
    help = (
        "Fire due schedules (repeatable jobs) until SIGTERM or SIGINT, sleeping at most "
        "1 s between passes; --once fires what is due and exits. Pushes one job per tick."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="one pass, then exit")

    def handle(self, *args: Any, **options: Any) -> str:
        if options["once"]:
            return f"Fired {schedules_fire(actor=ACTOR, limit=BATCH)} job(s)."
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        created = 0
        while not stop.is_set():
            created += self._pass(stop)
        return f"Stopped; fired {created} job(s)."

    def _pass(self, stop: threading.Event) -> int:
        try:
            created = schedules_fire(actor=ACTOR, limit=BATCH)
            due = earliest_due()
        except (OperationalError, InterfaceError) as error:
            # The database is down or restarting: the pass rolled back; try again soon.
            logger.warning("scheduler: database unavailable: %s", error)
            close_old_connections()
            stop.wait(MAX_SLEEP_SECONDS)
            return 0
        wait = MAX_SLEEP_SECONDS
        if due is not None:
            wait = min(wait, max(0.0, (due - timezone.now()).total_seconds()))
        if wait > 0:
            stop.wait(wait)
        return created
