"""A backend for Django's tasks API: Django 6's own ``django.tasks``, or on Django 5.2
the ``django-tasks`` backport (``pip install flashq-client[django]``). A project
``enqueue()``s its ``@task`` functions into flashQ queues over the API, and flashQ
workers run them with ``run`` as their handler.

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
carries the exception's class and message (never a traceback's local values). A job
cancelled or expired in flashQ is FAILED with a ``TaskCancelled`` or ``TaskExpired``
error; values the server masks for a token without ``reveal`` read as ``"[MASKED]"``.
The worker's ``run`` sends ``task_started`` and ``task_finished`` as Django's own
backends do.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from django.utils import timezone
from django.utils.module_loading import import_string

from .client import Client
from .errors import NotFound

if TYPE_CHECKING:  # checked against the backport, whose API Django 6 took over as it was
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import Task, TaskContext, TaskError, TaskResult, TaskResultStatus
    from django_tasks.exceptions import TaskResultDoesNotExist
    from django_tasks.signals import task_enqueued, task_finished, task_started
    from django_tasks.utils import normalize_json
else:
    try:  # Django 6.0 and later: the framework is Django's own
        from django.tasks.backends.base import BaseTaskBackend
        from django.tasks.base import (
            Task,
            TaskContext,
            TaskError,
            TaskResult,
            TaskResultStatus,
        )
        from django.tasks.exceptions import TaskResultDoesNotExist
        from django.tasks.signals import task_enqueued, task_finished, task_started
        from django.utils.json import normalize_json
    except ImportError:  # Django 5.2 with the django-tasks backport
        from django_tasks.backends.base import BaseTaskBackend
        from django_tasks.base import Task, TaskContext, TaskError, TaskResult, TaskResultStatus
        from django_tasks.exceptions import TaskResultDoesNotExist
        from django_tasks.signals import task_enqueued, task_finished, task_started
        from django_tasks.utils import normalize_json

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
#: What the server shows, without ``reveal`` on the queue, for a sensitive field's value
#: and for a worker's error text.
MASKED = "[MASKED]"


class TaskFailed(Exception):
    """What ``run`` raises for a task that raised: its text names the exception's class
    (the worker records ``str(exc)``, which get_result reads back). A result also shows
    it for a failure whose text it cannot read: masked, or written by the server."""


class TaskCancelled(Exception):
    """A result's error when its flashQ job was cancelled before the task finished."""


class TaskExpired(Exception):
    """A result's error when its flashQ job expired (its ttl ran out) before it ran."""


_ENDINGS: dict[str, tuple[type[Exception], str]] = {
    "cancelled": (TaskCancelled, "cancelled: the flashQ job was cancelled"),
    "expired": (TaskExpired, "expired: the flashQ job's ttl ran out before a worker ran it"),
}


class FlashQBackend(BaseTaskBackend):
    """Django's task backend for flashQ: ``enqueue`` pushes a job, ``get_result`` reads
    it back.

    Args:
        alias: the backend's name in ``TASKS``.
        params: its settings: ``QUEUES``, and ``OPTIONS`` with ``URL`` (required),
            ``QUEUE_PREFIX`` (default ``"tasks:"``), ``TOKEN`` (default: the
            environment's, as ``Client``) and ``ALLOW_INSECURE_HTTP`` (default False).
    """

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
        """The flashQ queue of a task queue.

        Args:
            queue_name: the task's ``queue_name``.

        Returns:
            ``QUEUE_PREFIX`` and the name.
        """
        return f"{self.prefix}{queue_name}"

    def enqueue(
        self,
        task: Task[P, T],
        args: P.args,  # type: ignore[valid-type]
        kwargs: P.kwargs,  # type: ignore[valid-type]
    ) -> TaskResult[T]:
        """Push the task as a job (``run_after`` its delay, its priority the job's) and
        send ``task_enqueued``.

        Args:
            task: the task.
            args: its positional arguments (JSON values).
            kwargs: its keyword arguments (JSON values).

        Returns:
            Its result, READY; the id is the flashQ job id.

        Raises:
            FlashqError: the push failed (``Forbidden`` without ``push`` on the queue).
        """
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
        # The answer carries no data.
        result = _task_result(task, {**job, "data": data}, self.alias)
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult:
        """Read a task's result back from its job.

        Args:
            result_id: the result's id (the flashQ job id).

        Returns:
            The result, its status from the job's state (cancelled and expired jobs are
            FAILED with a ``TaskCancelled`` or ``TaskExpired`` error).

        Raises:
            TaskResultDoesNotExist: no such job for this token, or not a task's.
            FlashqError: the server could not be asked (``Forbidden`` without
                ``getJob`` on the queue).
        """
        try:
            job = self.client.get_job(result_id)
        except NotFound:
            raise TaskResultDoesNotExist(result_id) from None
        try:
            task = import_string(job["data"]["task"])
        except (KeyError, TypeError, ImportError) as exc:
            raise TaskResultDoesNotExist(result_id) from exc
        return _task_result(task, job, self.alias)


def _task_result(task: Task[Any, Any], job: Mapping[str, Any], alias: str) -> TaskResult[Any]:
    """The task's result as ``job`` (as getJob shows it, or as pulled) tells it."""
    data = job.get("data") or {}
    args, kwargs = data.get("args"), data.get("kwargs")
    state = str(job.get("state"))
    status = _STATUS.get(state, TaskResultStatus.READY)
    errors = [_error(entry) for entry in job.get("errors") or []]
    if state in _ENDINGS:
        ending, text = _ENDINGS[state]
        errors.append(TaskError(exception_class_path=_path(ending), traceback=text))
    elif status == TaskResultStatus.FAILED and not errors:  # failed by the server
        errors.append(_error({"error": job.get("error"), "code": job.get("error_code")}))
    result: TaskResult[Any] = TaskResult(
        task=task,
        id=str(job["id"]),
        status=status,
        enqueued_at=_moment(job.get("created_at")),
        started_at=_moment(job.get("started_at")),
        last_attempted_at=_moment(job.get("started_at")),
        finished_at=_moment(job.get("finished_at")),
        # Masked whole (a queue whose sensitive fields name them), they read as none.
        args=list(args) if isinstance(args, list) else [],
        kwargs=dict(kwargs) if isinstance(kwargs, dict) else {},
        backend=alias,
        errors=errors,
        worker_ids=["flashq"] * int(job.get("attempts") or 0),
    )
    if result.status == TaskResultStatus.SUCCESSFUL:
        object.__setattr__(result, "_return_value", job.get("result"))
    return result


def _error(entry: Mapping[str, Any]) -> TaskError:
    """One failed attempt as a task error: the class and message run() recorded; a text
    masked for this token, or one the server wrote, as a TaskFailed saying so."""
    text, code = str(entry.get("error") or ""), str(entry.get("code") or "")
    path, found, message = text.partition(_SEPARATOR)
    if found and "." in path and " " not in path:
        return TaskError(exception_class_path=path, traceback=message)
    if text == MASKED:
        text = f"{MASKED}: the error text is masked (reading it needs reveal on the queue)"
    if code:
        text = f"{text} (code {code})" if text else f"code {code}"
    return TaskError(exception_class_path=_path(TaskFailed), traceback=text)


def _path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _moment(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def run(job: Mapping[str, Any]) -> Any:
    """The worker's handler: run the job's task with its arguments, sending
    ``task_started`` before and ``task_finished`` after (as Django's backends do).

    Args:
        job: the leased job, as the worker hands it.

    Returns:
        The task's return value through JSON: the job's result.

    Raises:
        TaskFailed: the task raised; its text is the exception's class and message.
    """
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
    sender = type(task.get_backend())
    result = _running(task, job)
    task_started.send(sender=sender, task_result=result)
    try:
        if task.takes_context:
            value = task.call(TaskContext(task_result=result), *args, **kwargs)
        else:
            value = task.call(*args, **kwargs)
        value = normalize_json(value)
    except Exception as exc:
        # Sent inside the handler, as Django does, so receivers can see the exception.
        _finish(result, TaskResultStatus.FAILED)
        result.errors.append(
            TaskError(exception_class_path=_path(type(exc)), traceback=_traceback(exc))
        )
        task_finished.send(sender=sender, task_result=result)
        raise TaskFailed(f"{_path(type(exc))}{_SEPARATOR}{exc}") from exc
    _finish(result, TaskResultStatus.SUCCESSFUL)
    object.__setattr__(result, "_return_value", value)
    task_finished.send(sender=sender, task_result=result)
    return value


def _running(task: Task[Any, Any], job: Mapping[str, Any]) -> TaskResult:
    """The task's result as it starts: RUNNING, from the leased job."""
    result = _task_result(task, {**job, "state": "active"}, task.backend)
    now = timezone.now()
    object.__setattr__(result, "started_at", result.started_at or now)
    object.__setattr__(result, "last_attempted_at", now)
    return result


def _finish(result: TaskResult, status: TaskResultStatus) -> None:
    object.__setattr__(result, "status", status)
    object.__setattr__(result, "finished_at", timezone.now())


def _traceback(exc: BaseException) -> str:
    """For this process's receivers only (flashQ gets the class and message)."""
    return "".join(traceback.format_exception(exc))


__all__ = ["MASKED", "FlashQBackend", "TaskCancelled", "TaskExpired", "TaskFailed", "run"]
