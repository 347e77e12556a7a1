"""A worker's calls: lease jobs, complete or fail them, report progress, give them back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from .._policy import Call, Plan, retry_after
from ..shapes import Job, JobId, Pulled
from .base import LONG_POLL_MARGIN_SECONDS, CallsBase, fetch, queue_segment, segment


def ack_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """One ``{id, lease_id, result?}`` for a batch ack or a pull's ``ack``."""
    body: dict[str, Any] = {"id": str(item["id"]), "lease_id": str(item["lease_id"])}
    if "result" in item:
        body["result"] = item["result"]
    return body


class WorkingCalls(CallsBase):
    def pull(
        self,
        queue: str,
        *,
        count: int = 1,
        lease: int = 30,
        wait: float = 0.0,
        ack: Sequence[Mapping[str, Any]] | None = None,
    ) -> Plan[Pulled]:
        """Lease up to ``count`` jobs of ``queue``, waiting up to ``wait`` seconds for some.

        Args:
            queue: the queue's name.
            count: at most this many jobs.
            lease: seconds each job is held before it goes back to waiting.
            wait: seconds to long-poll for jobs when none is ready (0: answer at once).
            ack: ``{id, lease_id, result?}`` items of this queue to complete in the same
                call (the previous batch).

        Returns:
            The leased jobs (``Pulled``, a list); its ``retry_after`` is set when the
            server answered at once instead of waiting (its cap on waiting pulls was
            reached): the seconds to wait before pulling again.

        Raises:
            Conflict: a stale ``ack`` item, named by ``/ack/<i>/lease_id``; then nothing
                is acked or leased.
            Forbidden: the token may not pull from the queue.
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            only when the request cannot have been acted on (never sent, or 429/503 with
            ``Retry-After``): a repeat would lease other jobs."""
        body: dict[str, Any] = {"count": count, "lease": lease, "wait": wait}
        if ack:
            body["ack"] = [ack_item(item) for item in ack]
        response = yield Call(
            method="POST",
            path=f"queues/{queue_segment(queue)}/pull",
            body=body,
            idempotent=False,
            read_timeout=wait + LONG_POLL_MARGIN_SECONDS,
        )
        return Pulled(response.json()["jobs"], retry_after=retry_after(response))

    def ack(self, job_id: JobId, lease_id: str, result: Any = None) -> Plan[Job]:
        """Complete a job you hold.

        Args:
            job_id: the job.
            lease_id: the lease ``pull`` gave it.
            result: the job's result (JSON).

        Returns:
            The completed job.

        Raises:
            Conflict: ``lease_conflict``: the lease is stale or another family's.
            InvalidInput: the result is refused (too large, a card number).
            NotFound: no such job.
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            yes, safe: the server answers a repeated ack of the same lease with the same
            outcome."""
        body = {"lease_id": str(lease_id), "result": result}
        answer = yield from fetch("POST", f"jobs/{segment(job_id)}/ack", body=body, idempotent=True)
        return cast(Job, answer)

    def ack_batch(self, acks: Sequence[Mapping[str, Any]]) -> Plan[int]:
        """Complete up to 1000 jobs, all or nothing.

        Args:
            acks: ``{id, lease_id, result?}`` items.

        Returns:
            How many jobs were completed.

        Raises:
            Conflict: a stale lease, named by its ``errors`` path; nothing is completed.
            InvalidInput: a result is refused.
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            yes, safe: the server answers a repeated ack of the same lease with the same
            outcome."""
        if not acks:
            return 0
        body = {"jobs": [ack_item(item) for item in acks]}
        answer = yield from fetch("POST", "jobs/ack", body=body, idempotent=True)
        return int(answer["acked"])

    def fail(
        self,
        job_id: JobId,
        lease_id: str,
        error: str,
        *,
        code: str | None = None,
        retry: bool = True,
        delay_ms: int | None = None,
    ) -> Plan[Job]:
        """Record a failed attempt of a job you hold.

        The job goes back to waiting after its backoff (or ``delay_ms``), or fails for
        good when its attempts are used up or ``retry`` is False.

        Args:
            job_id: the job.
            lease_id: the lease ``pull`` gave it.
            error: what went wrong, shown only to tokens with ``reveal`` on its queue.
            code: 1 to 64 letters, digits, ``.``, ``_`` or ``-`` (an exception's class
                name, say), shown to every reader of the job.
            retry: False fails the job for good now.
            delay_ms: run it again after this long instead of its backoff (0: at once).

        Returns:
            The job after the failure.

        Raises:
            Conflict: ``lease_conflict``: the lease is stale or another family's.
            NotFound: no such job.
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            only when the request cannot have been acted on: a repeat would count a
            second failed attempt."""
        body: dict[str, Any] = {"lease_id": str(lease_id), "error": error, "retry": retry}
        if code is not None:
            body["code"] = code
        if delay_ms is not None:
            body["delay"] = delay_ms
        answer = yield from fetch(
            "POST", f"jobs/{segment(job_id)}/fail", body=body, idempotent=False
        )
        return cast(Job, answer)

    def progress(self, job_id: JobId, lease_id: str, progress: int, message: str = "") -> Plan[Job]:
        """Report a held job's progress; also extends its lease by its length.

        Never past the job's deadline (its timeout): from then on a ``Conflict``.

        Args:
            job_id: the job.
            lease_id: the lease ``pull`` gave it.
            progress: 0 to 100.
            message: a short note, shown only to tokens with ``reveal`` on its queue.

        Returns:
            The job with its progress and new ``lease_expires_at``.

        Raises:
            Conflict: the lease is stale, or the job's deadline has passed.
            NotFound: no such job (or it was cancelled).
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            yes, safe: it sets absolute values and extends the lease by its length, so a
            report sent twice leaves the job as one would."""
        body = {"lease_id": str(lease_id), "progress": progress, "message": message}
        path = f"jobs/{segment(job_id)}/progress"
        return cast(Job, (yield from fetch("POST", path, body=body, idempotent=True)))

    def release(self, job_id: JobId, lease_id: str) -> Plan[Job]:
        """Give a job you hold back at once, the attempt not counted (a worker shutting
        down).

        Args:
            job_id: the job.
            lease_id: the lease ``pull`` gave it.

        Returns:
            The job, waiting again.

        Raises:
            Conflict: the lease is stale.
            NotFound: no such job (or a server without ``release``).
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            only when the request cannot have been acted on: a repeat after a lost answer
            would find the lease gone."""
        body = {"lease_id": str(lease_id)}
        path = f"jobs/{segment(job_id)}/release"
        return cast(Job, (yield from fetch("POST", path, body=body, idempotent=False)))

    def snooze(self, job_id: JobId, lease_id: str, delay_ms: int) -> Plan[Job]:
        """Give a job you hold back to run again after ``delay_ms``, the attempt not
        counted.

        Args:
            job_id: the job.
            lease_id: the lease ``pull`` gave it.
            delay_ms: milliseconds before it runs again.

        Returns:
            The job, delayed.

        Raises:
            Conflict: the lease is stale.
            NotFound: no such job.
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            only when the request cannot have been acted on: a repeat after a lost answer
            would find the lease gone."""
        body = {"lease_id": str(lease_id), "delay_ms": delay_ms}
        path = f"jobs/{segment(job_id)}/snooze"
        return cast(Job, (yield from fetch("POST", path, body=body, idempotent=False)))
