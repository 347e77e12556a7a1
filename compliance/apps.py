from __future__ import annotations

import os
import sys

from django.apps import AppConfig


class ComplianceConfig(AppConfig):
    name = "compliance"
    verbose_name = "Compliance"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from queues.models import Queue
        from security.models import ApiToken, QueuePermission

        from . import (
            logins,  # noqa: F401 (connects the login signal receivers)
            staffrights,
        )
        from .models import RetentionPolicy

        staffrights.connect()

        # Field-level change history of configuration. Never a secret: the token's
        # hash is excluded, and so is its per-call bookkeeping.
        auditlog.register(Queue)
        auditlog.register(ApiToken, exclude_fields=["secret_hash", "last_used_at", "last_used_ip"])
        auditlog.register(QueuePermission)
        auditlog.register(RetentionPolicy)
        # Per-queue staff rights granted on the admin's "Object permissions" pages.
        from guardian.models import GroupObjectPermission, UserObjectPermission

        auditlog.register(UserObjectPermission)
        auditlog.register(GroupObjectPermission)

        # The scheduler's own counters (flashq_project.metrics), before qcluster forks.
        port = os.environ.get("SCHEDULER_METRICS_PORT")
        if port and sys.argv[1:2] == ["qcluster"]:
            from flashq_project.metrics import serve_scheduler_metrics

            bind = os.environ.get("SCHEDULER_METRICS_BIND", "0.0.0.0")  # noqa: S104 (a pod)
            serve_scheduler_metrics(int(port), bind)
