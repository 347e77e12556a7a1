from __future__ import annotations

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
