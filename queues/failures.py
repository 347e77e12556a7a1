"""A failed attempt's bookkeeping, and a lease given up: shared by what workers report
(queues.services.reports), lease recovery (queues.pulling) and the settling of waiting
jobs (queues.dependents), which sits below the services."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from kernel import limits

from .models import Job, JobState

LEASE_FIELDS = ["lease_id", "lease_owner", "lease_expires_at", "deadline_at"]
FAILURE_FIELDS = [
    "errors",
    "error",
    "error_code",
    "state",
    "run_at",
    "finished_at",
    "failed_at",
    *LEASE_FIELDS,
]


def cancellation(now: datetime) -> dict[str, Any]:
    """What cancelling sets, for a QuerySet.update(): an active job's lease is void from
    then on (its worker's ack is a 409)."""
    return {
        "state": JobState.CANCELLED,
        "finished_at": now,
        **dict.fromkeys(LEASE_FIELDS),
        "lease_owner": "",
    }


def release_lease(job: Job) -> None:
    job.lease_id = None
    job.lease_owner = ""
    job.lease_expires_at = None
    job.deadline_at = None


def record_failure(
    job: Job, message: str, *, now: datetime, retry: bool, delay_ms: int, code: str = ""
) -> None:
    """Count a failed attempt: history entry (with its code), then back to waiting or to
    failed."""
    message = message[: limits.MAX_ERROR_LENGTH]
    entry = {"attempt": job.attempts, "error": message, "code": code, "at": now.isoformat()}
    job.errors = [*job.errors, entry][-limits.MAX_ERROR_HISTORY :]
    job.error = message
    job.error_code = code
    release_lease(job)
    if retry and job.attempts < job.max_attempts:
        job.state = JobState.WAITING
        job.run_at = now + timedelta(milliseconds=delay_ms)
    else:
        job.state = JobState.FAILED
        job.finished_at = now
        job.failed_at = now
