from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


def _queue_saved(*, created: bool = False, **kwargs: Any) -> None:
    if not created:  # a new queue was never remembered (queues.queuecache)
        _queue_changed()


def _queue_changed(**kwargs: Any) -> None:
    from .queuecache import forget_on_commit

    forget_on_commit()


class QueuesConfig(AppConfig):
    name = "queues"
    verbose_name = "Queues"

    def ready(self) -> None:
        from . import checks  # noqa: F401 (registers the system checks)
        from .models import Queue

        # A queue changed in this process: no remembered row outlives the commit here
        # (other app servers read it again within QUEUE_CACHE_SECONDS).
        post_save.connect(_queue_saved, sender=Queue, dispatch_uid="queuecache-save")
        post_delete.connect(_queue_changed, sender=Queue, dispatch_uid="queuecache-delete")
