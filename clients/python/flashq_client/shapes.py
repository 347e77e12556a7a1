"""The shapes of the API's answers, as TypedDicts (plain dicts at run time), and
``Pulled``, the list ``pull`` returns."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Literal, NotRequired, TypedDict

#: A job id as text or as a ``uuid.UUID``.
JobId = str | uuid.UUID


class Backoff(TypedDict, total=False):
    type: Literal["fixed", "exponential"]
    delay: int  # ms
    max: int  # ms, the cap
    jitter: float  # 0..1


class JobSummary(TypedDict):
    id: str
    queue: str
    state: str
    priority: int
    attempts: int
    max_attempts: int
    key: str | None
    group: str | None
    run_at: str
    created_at: str


class PushedJob(JobSummary):
    #: True when this call created the job (201); False when an unfinished job this
    #: token's family pushed already had the key (200).
    created: bool


class LeasedJob(TypedDict):
    id: str
    queue: str
    data: dict[str, Any]
    priority: int
    attempts: int
    max_attempts: int
    progress: int
    tags: list[str]
    group: str | None
    lease_id: str
    lease_expires_at: str
    #: The job's timeout (ms) and this attempt's deadline (the lease never outlives it).
    timeout: int | None
    deadline_at: str | None
    created_at: str


class Pulled(list[LeasedJob]):
    """What ``pull`` leased. ``retry_after`` is set when the server answered at once
    instead of waiting (its cap on waiting pulls was reached): the seconds to wait before
    pulling again, rather than calling back straight away.

    Args:
        jobs: the leased jobs, in the order the server gave them.
        retry_after: seconds to wait before the next pull, or None.
    """

    def __init__(self, jobs: Sequence[LeasedJob], *, retry_after: float | None) -> None:
        super().__init__(jobs)
        self.retry_after = retry_after


class ErrorEntry(TypedDict):
    attempt: int
    #: "[MASKED]" unless the token has reveal on the queue ("" stays "").
    error: str
    code: str
    at: str


class Job(JobSummary):
    data: dict[str, Any]
    result: Any
    #: error and progress_message: "[MASKED]" unless the token has reveal on the queue.
    error: str
    error_code: str
    errors: list[ErrorEntry]
    backoff: Backoff
    progress: int
    progress_message: str
    subject: str | None
    tags: list[str]
    expires_at: str | None
    started_at: str | None
    finished_at: str | None
    lease_expires_at: str | None
    timeout: int | None
    deadline_at: str | None
    #: Only to the token family that holds the current lease.
    lease_id: NotRequired[str]
    #: getJob and wait: the flow job whose child this is (null outside a flow), and the
    #: ids it was pushed with in ``depends_on``.
    parent: NotRequired[str | None]
    depends_on: NotRequired[list[str]]


class WaitedJob(Job):
    """A job at the end of ``wait`` (or ``push(..., wait=True)``)."""

    #: True when it has finished (completed, failed, cancelled or expired); False when
    #: the timeout ran out first.
    finished: bool
    #: ``push(..., wait=True)`` only: whether the push created the job.
    created: NotRequired[bool]


class FlowNode(TypedDict):
    """A flow's answer: the tree of ids, queues and states, as pushed."""

    id: str
    queue: str
    state: str
    children: list[FlowNode]
    #: The root only: True when this call created the flow (201); False when an
    #: unfinished root of this token's family had the key (200, the existing tree).
    created: NotRequired[bool]


class AckItem(TypedDict):
    id: str
    lease_id: str
    result: NotRequired[Any]


class RateLimit(TypedDict):
    max: int
    duration_ms: int


class QueueInfo(TypedDict):
    name: str
    paused: bool
    rate_limit: RateLimit | None
    concurrency: int | None
    #: At most this many active jobs per group (``group`` on push); 1 by default.
    group_concurrency: int
    schema: dict[str, Any] | None
    created_at: str


class QueueStats(QueueInfo):
    counts: dict[str, int]
    oldest_waiting_age_seconds: float | None


class Permission(TypedDict):
    effect: Literal["allow", "deny"]
    pattern: str
    verbs: list[str]


class Me(TypedDict):
    name: str
    bootstrap: bool
    family: str
    created_at: str | None
    expires_at: str | None
    allowed_cidrs: list[str]
    permissions: list[Permission]


class CleanResult(TypedDict):
    deleted: dict[str, dict[str, int]]  # queue -> state -> jobs deleted
    total: int
    skipped: list[str]
    held: list[str]


class ErasureResult(TypedDict):
    executed: bool
    mode: str
    total: int
    counts: dict[str, dict[str, int]]
    redacted_fields: dict[str, list[str]]
    held: list[str]
    skipped: list[str]
    other_stores: str
    receipt_id: int | None
