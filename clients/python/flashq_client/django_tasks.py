"""A backend for Django's tasks API (the ``django-tasks`` package on Django 5.2): a
project ``enqueue()``s its ``@task`` functions into flashQ queues over the API, and
flashQ workers run them with ``run`` as their handler.

    TASKS = {
        "default": {
            "BACKEND": "flashq_client.django_tasks.FlashQBackend",
            "QUEUES": ["default", "emails"],
            "OPTIONS": {"URL": "https://flashq.internal", "QUEUE_PREFIX": "tasks:"},
        }
    }

The token comes from ``OPTIONS["TOKEN"]``, else ``FLASHQ_TOKEN`` or ``FLASHQ_TOKEN_FILE``
(as for ``Client``). A task's queue ``emails`` is the flashQ queue ``tasks:emails``.
Arguments and return values go through JSON. Run the tasks with

    DJANGO_SETTINGS_MODULE=mysite.settings \\
        python -m flashq_client.worker flashq_client.django_tasks:run --queue tasks:emails

A result is read back with ``task.get_result(result_id)`` (the flashQ job id): its
status follows the job's state, its return value is the job's result, and a failure
carries the exception's class and message (never a traceback's local values).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeVar

from django.utils import timezone
from django.utils.module_loading import import_string
from django_tasks.backends.base import BaseTaskBackend
from django_tasks.base import Task, TaskContext, TaskError, TaskResult, TaskResultStatus
from django_tasks.exceptions import TaskResultDoesNotExist
from django_tasks.signals import task_enqueued
from django_tasks.utils import get_module_path, normalize_json
from typing_extensions import ParamSpec

from .client import Client
from .errors import NotFound

T = TypeVar("T")
P = ParamSpec("P")

_STATUS = {
    "waiting": TaskResultStatus.READY,
    "delayed": TaskResultStatus.READY,
    "waiting-children": TaskResultStatus.READY,
    "active": TaskResultStatus.RUNNING,
    "completed": TaskResultStatus.SUCCESSFUL,
    "failed": TaskResultStatus.FAILED,
    "cancelled": TaskResultStatus.FAILED,
    "expired": TaskResultStatus.FAILED,
}
# A failure's text, as run() raises it: "<exception class path>: <message>".
_SEPARATOR = ": "


class FlashQBackend(BaseTaskBackend):
    supports_defer = True
    supports_priority = True
    supports_get_result = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.prefix = str(self.options.get("QUEUE_PREFIX", "tasks:"))
        self._local = threading.local()

    @property
    def client(self) -> Client:
        """One client per thread (it keeps its connections)."""
        client: Client | None = getattr(self._local, "client", None)
        if client is None:
            client = Client(
                str(self.options["URL"]),
                self.options.get("TOKEN"),
                allow_insecure_http=bool(self.options.get("ALLOW_INSECURE_HTTP", False)),
            )
            self._local.client = client
        return client

    def queue_for(self, queue_name: str) -> str:
        return f"{self.prefix}{queue_name}"

    def enqueue(
        self,
        task: Task[P, T],
        args: P.args,  # type: ignore[valid-type]
        kwargs: P.kwargs,  # type: ignore[valid-type]
    ) -> TaskResult[T]:
        self.validate_task(task)
        data = {
            "task": task.module_path,
            "args": normalize_json(args),
            "kwargs": normalize_json(kwargs),
        }
        delay_ms = None
        if task.run_after is not None:
            delay_ms = max(0, int((task.run_after - timezone.now()).total_seconds() * 1000))
        job = self.client.push(
            self.queue_for(task.queue_name), data, priority=task.priority, delay_ms=delay_ms
        )
        result = self._result(task, {**job, "data": data})  # the answer carries no data
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult:
        try:
            job = self.client.get_job(result_id)
        except NotFound:
            raise TaskResultDoesNotExist(result_id) from None
        try:
            task = import_string(job["data"]["task"])
        except (KeyError, TypeError, ImportError) as exc:
            raise TaskResultDoesNotExist(result_id) from exc
        return self._result(task, job)

    def _result(self, task: Task[Any, Any], job: Mapping[str, Any]) -> TaskResult[Any]:
        data = job.get("data") or {}
        errors = [
            TaskError(exception_class_path=path, traceback=message)
            for path, message in (
                _split(entry.get("error", "")) for entry in job.get("errors") or []
            )
        ]
        result: TaskResult[Any] = TaskResult(
            task=task,
            id=str(job["id"]),
            status=_STATUS.get(str(job.get("state")), TaskResultStatus.READY),
            enqueued_at=_moment(job.get("created_at")),
            started_at=_moment(job.get("started_at")),
            last_attempted_at=_moment(job.get("started_at")),
            finished_at=_moment(job.get("finished_at")),
            args=list(data.get("args") or []),
            kwargs=dict(data.get("kwargs") or {}),
            backend=self.alias,
            errors=errors,
            worker_ids=["flashq"] * int(job.get("attempts") or 0),
        )
        if result.status == TaskResultStatus.SUCCESSFUL:
            object.__setattr__(result, "_return_value", job.get("result"))
        return result


def _split(text: str) -> tuple[str, str]:
    path, found, message = str(text).partition(_SEPARATOR)
    if not found or "." not in path or " " in path:
        return "builtins.Exception", str(text)
    return path, message


def _moment(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


class TaskFailed(Exception):
    """What ``run`` raises for a task that raised: its text names the exception's class
    (the worker records ``str(exc)``, which get_result reads back)."""


def run(job: Mapping[str, Any]) -> Any:
    """The worker's handler: run the job's task with its arguments; its return value
    (through JSON) becomes the job's result."""
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup()
    from django.db import close_old_connections

    close_old_connections()  # as Django does around each request
    try:
        return _run(job)
    finally:
        close_old_connections()


def _run(job: Mapping[str, Any]) -> Any:
    data = job["data"]
    task: Task[Any, Any] = import_string(data["task"])
    if not isinstance(task, Task):
        raise TypeError(f"{data['task']} is not a task")
    args, kwargs = list(data.get("args") or []), dict(data.get("kwargs") or {})
    try:
        if task.takes_context:
            backend = task.get_backend()
            context = TaskContext(task_result=backend._result(task, job))  # type: ignore[attr-defined]
            value = task.call(context, *args, **kwargs)
        else:
            value = task.call(*args, **kwargs)
    except Exception as exc:
        raise TaskFailed(f"{get_module_path(type(exc))}{_SEPARATOR}{exc}") from exc
    return normalize_json(value)


__all__ = ["FlashQBackend", "TaskFailed", "run"]
