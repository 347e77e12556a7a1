from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db import transaction
from django.db.models.signals import post_delete, post_save


def _forget_principals(**kwargs: Any) -> None:
    from .authentication import forget_principals

    # After the commit: a request in between would remember the old rows again.
    transaction.on_commit(forget_principals)


class SecurityConfig(AppConfig):
    name = "security"
    verbose_name = "Security"

    def ready(self) -> None:
        from . import checks  # noqa: F401 (registers the system checks)
        from .models import ApiToken, QueuePermission

        # A token or rule changed in this process: no remembered principal outlives it
        # here (other app servers forget theirs within PRINCIPAL_CACHE_SECONDS).
        for model in (ApiToken, QueuePermission):
            post_save.connect(_forget_principals, sender=model, dispatch_uid=f"forget-{model}")
            post_delete.connect(_forget_principals, sender=model, dispatch_uid=f"forget-{model}")
