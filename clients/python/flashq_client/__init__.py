"""flashQ's Python client and worker.

::

    from flashq_client import Client

    with Client("https://flashq.example.com") as flashq:  # token from FLASHQ_TOKEN
        flashq.push("email", {"to": "a@example.com"}, priority=5)

``AsyncClient`` has the same methods as coroutines (``await flashq.push(...)``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._settings import __version__
from .aio import AsyncClient
from .client import Client
from .errors import (
    Conflict,
    ConnectionFailed,
    FieldDecryptionError,
    FieldProblem,
    FlashqError,
    Forbidden,
    Interrupted,
    InvalidInput,
    NotFound,
    RateLimited,
    Unauthorized,
    Unavailable,
)
from .fields import FieldKeys, new_key, open_fields, seal_fields
from .shapes import (
    AckItem,
    Backoff,
    CleanResult,
    ErasureResult,
    ErrorEntry,
    FlowNode,
    Job,
    JobSummary,
    LeasedJob,
    Me,
    Permission,
    Pulled,
    PushedJob,
    QueueInfo,
    QueueStats,
    RateLimit,
    WaitedJob,
)
from .webhooks import SignatureError, verify_signature

if TYPE_CHECKING:
    from .worker import AsyncWorker, AsyncWorkerJob, Worker, WorkerJob

_WORKER_NAMES = frozenset({"AsyncWorker", "AsyncWorkerJob", "Worker", "WorkerJob"})


def __getattr__(name: str) -> Any:
    # The worker is imported on first use, so `python -m flashq_client.worker` does not
    # find its own module already imported by the package.
    if name in _WORKER_NAMES:
        from . import worker

        return getattr(worker, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AckItem",
    "AsyncClient",
    "AsyncWorker",
    "AsyncWorkerJob",
    "Backoff",
    "CleanResult",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "ErasureResult",
    "ErrorEntry",
    "FieldDecryptionError",
    "FieldKeys",
    "FieldProblem",
    "FlashqError",
    "FlowNode",
    "Forbidden",
    "Interrupted",
    "InvalidInput",
    "Job",
    "JobSummary",
    "LeasedJob",
    "Me",
    "NotFound",
    "Permission",
    "Pulled",
    "PushedJob",
    "QueueInfo",
    "QueueStats",
    "RateLimit",
    "RateLimited",
    "SignatureError",
    "Unauthorized",
    "Unavailable",
    "WaitedJob",
    "Worker",
    "WorkerJob",
    "__version__",
    "new_key",
    "open_fields",
    "seal_fields",
    "verify_signature",
]
