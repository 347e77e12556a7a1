"""flashQ's Python client and worker.

::

    from flashq_client import Client

    with Client("https://flashq.example.com") as flashq:  # token from FLASHQ_TOKEN
        flashq.push("email", {"to": "a@example.com"}, priority=5)
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from .client import (
    AckItem,
    Backoff,
    CleanResult,
    Client,
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
from .errors import (
    Conflict,
    ConnectionFailed,
    FieldProblem,
    FlashqError,
    Forbidden,
    InvalidInput,
    NotFound,
    RateLimited,
    Unauthorized,
    Unavailable,
)
from .webhooks import SignatureError, verify_signature

if TYPE_CHECKING:
    from .worker import Worker, WorkerJob

try:
    __version__ = version("flashq-client")  # the installed distribution's, from pyproject
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"


def __getattr__(name: str) -> Any:
    # The worker is imported on first use, so `python -m flashq_client.worker` does not
    # find its own module already imported by the package.
    if name == "Worker":
        from .worker import Worker

        return Worker
    if name == "WorkerJob":
        from .worker import WorkerJob

        return WorkerJob
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AckItem",
    "Backoff",
    "CleanResult",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "ErasureResult",
    "ErrorEntry",
    "FieldProblem",
    "FlashqError",
    "FlowNode",
    "Forbidden",
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
    "verify_signature",
]
