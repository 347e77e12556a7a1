"""``manage.py run_webhooks``: the process that delivers webhooks. Each pass queues the
deliveries of new job events (queues.webhooks.dispatch) and sends those that are due
(queues.webhooks.deliver), then sleeps up to half a second when there was nothing to
do. It stops cleanly on SIGTERM or SIGINT, after the delivery it is sending has been
settled (at most safehttp's 5 s deadline); the others it leased are released. Any
number may run beside each other: the dispatcher's cursor is locked while it moves,
and each delivery is leased to one sender. ``--once`` makes one pass."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import InterfaceError, OperationalError, close_old_connections

from compliance.audit import Actor
from queues.webhooks.deliver import deliver
from queues.webhooks.dispatch import dispatch

logger = logging.getLogger("flashq.webhooks")

ACTOR = Actor.system("webhooks")
IDLE_SECONDS = 0.5


class Command(BaseCommand):
    help = (
        "Queue and send webhook deliveries until SIGTERM or SIGINT (--once: one pass). "
        "Pushes delivery jobs into the internal queue and acks or fails them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="one pass, then exit")

    def handle(self, *args: Any, **options: Any) -> str:
        if options["once"]:
            queued, (sent, delivered) = dispatch(actor=ACTOR), deliver(actor=ACTOR)
            return f"Queued {queued}, sent {sent}, delivered {delivered}."
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        delivered = 0
        while not stop.is_set():
            delivered += self._pass(stop)
        return f"Stopped; delivered {delivered}."

    def _pass(self, stop: threading.Event) -> int:
        try:
            queued = dispatch(actor=ACTOR)
            sent, delivered = deliver(actor=ACTOR, stop=stop)
        except (OperationalError, InterfaceError) as error:
            # The database is down or restarting: the pass rolled back; try again soon.
            logger.warning("webhooks: database unavailable: %s", error)
            close_old_connections()
            stop.wait(IDLE_SECONDS)
            return 0
        if not queued and not sent:
            stop.wait(IDLE_SECONDS)
        return delivered
