"""Workers: pull the jobs of one queue and run a handler on each.

::

    python -m flashq_client.worker myapp.tasks:send_email --queue email --concurrency 4

``Worker`` runs handlers in a pool of threads, ``AsyncWorker`` runs ``async def``
handlers as tasks of an event loop. Both keep the same books (``core``) and follow the
same rules with the server (``flows``); the client's README ("The worker") says what
they do, and what SIGTERM does, with its timings.
"""

from __future__ import annotations

from .aio import AsyncHandler, AsyncWorker, AsyncWorkerClient
from .cli import is_async, load_handler, main
from .core import MAX_BATCH, error_code
from .flows import RESULT_REFUSED_CODE, SHUTDOWN_CODE, SHUTDOWN_ERROR
from .jobs import AsyncWorkerJob, WorkerJob
from .threads import Handler, Worker

__all__ = [
    "MAX_BATCH",
    "RESULT_REFUSED_CODE",
    "SHUTDOWN_CODE",
    "SHUTDOWN_ERROR",
    "AsyncHandler",
    "AsyncWorker",
    "AsyncWorkerClient",
    "AsyncWorkerJob",
    "Handler",
    "Worker",
    "WorkerJob",
    "error_code",
    "is_async",
    "load_handler",
    "main",
]
