"""The project's own app, last in INSTALLED_APPS: wiring that needs every app loaded."""

from __future__ import annotations

import os
import sys
from typing import Any

from django.apps import AppConfig


class FlashqConfig(AppConfig):
    name = "flashq_project"
    verbose_name = "flashQ"

    def ready(self) -> None:
        from django.contrib import admin
        from django.db.backends.signals import connection_created

        from .adminindex import seal_internals

        # Every app has registered its ModelAdmins by now (admin's autodiscover runs
        # first): the internal apps' become superusers-only.
        seal_internals(admin.site)
        # PostgreSQL timestamps read in C (kernel.timestamps), on every new connection.
        connection_created.connect(_fast_timestamps, dispatch_uid="flashq-timestamps")
        # The scheduler's own counters (flashq_project.metrics), before qcluster forks;
        # and the webhook sender's, run in a container of its own.
        port = os.environ.get("SCHEDULER_METRICS_PORT")
        if port and sys.argv[1:2] in (["qcluster"], ["run_webhooks"]):
            from .metrics import serve_scheduler_metrics

            bind = os.environ.get("SCHEDULER_METRICS_BIND", "0.0.0.0")  # noqa: S104 (a pod)
            serve_scheduler_metrics(int(port), bind)


def _fast_timestamps(sender: Any, connection: Any, **kwargs: Any) -> None:
    from kernel import timestamps

    timestamps.install(connection)
