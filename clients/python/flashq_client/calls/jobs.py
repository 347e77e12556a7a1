"""Reading and changing jobs by id, and the jobs of a queue in bulk."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

from .._policy import Plan
from ..fields import check_sealed
from ..shapes import CleanResult, Job, JobId
from .base import CallsBase, fetch, iso, queue_segment, segment

#: One page of ``get_jobs``: its jobs, and the cursor of the next page (None: the last).
JobsPage = tuple[list[Job], str | None]

#: The docstring of both clients' ``get_jobs``, which each writes as its kind of
#: iterator over ``jobs_page``.
GET_JOBS_DOC = """Every job of a queue, oldest first, fetched a page at a time as it is read.

        Args:
            queue: the queue's name.
            state: only jobs in this state.
            page_size: jobs per request (at most 500).

        Returns:
            An iterator over the jobs (``async for`` on ``AsyncClient``) that follows
            ``next_cursor`` from page to page.

        Raises:
            NotFound: no such queue, or one the token may not see.
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            yes, safe: each page is a read."""


class JobCalls(CallsBase):
    def get_job(self, job_id: JobId) -> Plan[Job]:
        """One job as the token may see it.

        Args:
            job_id: the job.

        Returns:
            The job; ``error`` and ``progress_message`` are ``[MASKED]`` unless the
            token has ``reveal`` on its queue.

        Raises:
            NotFound: no such job, or one the token may not see.
            Forbidden: the token lacks ``getJob`` on the job's queue.
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            yes, safe: a read."""
        return cast(Job, (yield from fetch("GET", f"jobs/{segment(job_id)}", idempotent=True)))

    def jobs_page(
        self, queue: str, *, state: str | None, page_size: int, cursor: str | None
    ) -> Plan[JobsPage]:
        """One page of ``get_jobs`` (which documents it)."""
        params: dict[str, str | int] = {"limit": page_size}
        if state is not None:
            params["state"] = state
        if cursor is not None:
            params["cursor"] = cursor
        path = f"queues/{queue_segment(queue)}/jobs"
        page = yield from fetch("GET", path, params=params, idempotent=True)
        return cast(list[Job], page["jobs"]), page.get("next_cursor") or None

    def cancel(self, job_id: JobId) -> Plan[Job]:
        """Cancel a waiting or active job.

        Args:
            job_id: the job.

        Returns:
            The cancelled job.

        Raises:
            Conflict: ``state_conflict``: the job has finished.
            NotFound: no such job.
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            only when the request cannot have been acted on: a repeat after a lost answer
            would be a ``Conflict``."""
        path = f"jobs/{segment(job_id)}/cancel"
        return cast(Job, (yield from fetch("POST", path, idempotent=False)))

    def update(
        self,
        job_id: JobId,
        data: Mapping[str, Any] | None = None,
        *,
        priority: int | None = None,
        run_at: datetime | str | None = None,
    ) -> Plan[Job]:
        """Change a waiting or delayed job; at least one of the three.

        Args:
            job_id: the job.
            data: its new payload (only if it has not started).
            priority: its new priority.
            run_at: when it runs (an aware datetime or ISO 8601 text; a past time makes
                it ready now).

        Returns:
            The job as changed.

        Raises:
            ValueError: none of the three is given.
            Conflict: ``state_conflict``: the job is not waiting or delayed.
            InvalidInput: a value is refused (the queue's schema, say).
            NotFound: no such job.
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            yes, safe: it sets absolute values."""
        check_sealed(data, self.settings.encrypt_fields)
        body: dict[str, Any] = {}
        if data is not None:
            body["data"] = dict(data)
        if priority is not None:
            body["priority"] = priority
        if run_at is not None:
            body["run_at"] = iso(run_at)
        if not body:
            raise ValueError("give at least one of data, priority and run_at")
        path = f"jobs/{segment(job_id)}"
        return cast(Job, (yield from fetch("PATCH", path, body=body, idempotent=True)))

    def promote(self, job_id: JobId, reason: str | None = None) -> Plan[Job]:
        """Run a delayed job now.

        Args:
            job_id: the job.
            reason: goes into the audit event.

        Returns:
            The job, ready.

        Raises:
            Conflict: the job is not delayed.
            NotFound: no such job.
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            only when the request cannot have been acted on: a repeat after a lost answer
            would be a ``Conflict``."""
        body = {"reason": reason} if reason else {}
        path = f"jobs/{segment(job_id)}/promote"
        return cast(Job, (yield from fetch("POST", path, body=body, idempotent=False)))

    def retry_failed(
        self,
        queue: str,
        *,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        limit: int = 1000,
    ) -> Plan[int]:
        """Send failed jobs of ``queue`` back to waiting, oldest first, in one call.

        Args:
            queue: the queue's name.
            since: only jobs that failed at or after this (aware datetime or ISO text).
            until: only jobs that failed before this.
            limit: at most this many.

        Returns:
            How many jobs went back to waiting.

        Raises:
            Forbidden: the token may not retry jobs of the queue.
            InvalidInput: a bad time or limit.
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            only when the request cannot have been acted on: a repeat would retry jobs
            that failed since."""
        body: dict[str, Any] = {"limit": limit}
        for name, moment in (("since", since), ("until", until)):
            if moment is not None:
                body[name] = iso(moment)
        path = f"queues/{queue_segment(queue)}/retry-failed"
        answer = yield from fetch("POST", path, body=body, idempotent=False)
        return int(answer["retried"])

    def retry(self, job_id: JobId) -> Plan[Job]:
        """Send a failed, cancelled or expired job back to waiting.

        Args:
            job_id: the job.

        Returns:
            The job, waiting.

        Raises:
            Conflict: the job is not failed, cancelled or expired.
            NotFound: no such job.
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            only when the request cannot have been acted on: a repeat after the job
            failed again would run it once more."""
        path = f"jobs/{segment(job_id)}/retry"
        return cast(Job, (yield from fetch("POST", path, idempotent=False)))

    def clean(
        self, pattern: str, grace_ms: int, state: str = "completed", *, limit: int = 1000
    ) -> Plan[CleanResult]:
        """Delete finished jobs: ``clean("*", 30 * 86_400_000, "completed")``.

        Args:
            pattern: a queue name, or ``*`` wildcards: every queue it reaches.
            grace_ms: only jobs that finished at least this long ago.
            state: completed, failed, cancelled or expired.
            limit: at most this many jobs.

        Returns:
            What was deleted per queue and state, the total, and the queues skipped
            (no right) or held (a legal hold).

        Raises:
            InvalidInput: a bad state, grace or limit.
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            only when the request cannot have been acted on: a repeat would delete jobs
            that finished since."""
        body = {"grace_ms": grace_ms, "state": state, "limit": limit}
        path = f"queues/{segment(pattern, safe=':*')}/clean"
        return cast(CleanResult, (yield from fetch("POST", path, body=body, idempotent=False)))
