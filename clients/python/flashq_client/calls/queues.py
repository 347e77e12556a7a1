"""Queues and their limits, the token itself, and GDPR erasure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, cast

from .._policy import Plan
from ..shapes import ErasureResult, Me, QueueInfo, QueueStats
from .base import CallsBase, fetch, queue_segment


def _setting(method: str, queue: str, setting: str, body: Any = None) -> Plan[QueueInfo]:
    """PUT or DELETE one of a queue's settings (absolute: safe to repeat)."""
    path = f"queues/{queue_segment(queue)}/{setting}"
    return cast(QueueInfo, (yield from fetch(method, path, body=body, idempotent=True)))


class QueueCalls(CallsBase):
    def list_queues(self) -> Plan[list[QueueInfo]]:
        """The queues the token may see.

        Returns:
            Each queue's settings (paused, limits, schema).

        Raises:
            Unauthorized: the token is missing, unknown, expired or revoked.
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            yes, safe: a read."""
        return cast(list[QueueInfo], (yield from fetch("GET", "queues", idempotent=True))["queues"])

    def stats(self, queue: str) -> Plan[QueueStats]:
        """A queue's settings, its job counts by state and the age of its oldest
        waiting job.

        Args:
            queue: the queue's name.

        Returns:
            The queue with ``counts`` and ``oldest_waiting_age_seconds``.

        Raises:
            NotFound: no such queue, or one the token may not see.
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            yes, safe: a read."""
        path = f"queues/{queue_segment(queue)}"
        return cast(QueueStats, (yield from fetch("GET", path, idempotent=True)))

    def pause(self, queue: str) -> Plan[QueueInfo]:
        """Pause a queue: pulls hand out nothing until it is resumed.

        Args:
            queue: the queue's name.

        Returns:
            The queue, paused.

        Raises:
            Forbidden: the token may not pause the queue.
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            yes, safe: pausing a paused queue changes nothing."""
        path = f"queues/{queue_segment(queue)}/pause"
        return cast(QueueInfo, (yield from fetch("POST", path, idempotent=True)))

    def resume(self, queue: str) -> Plan[QueueInfo]:
        """Resume a paused queue.

        Args:
            queue: the queue's name.

        Returns:
            The queue, running.

        Raises:
            Forbidden: the token may not resume the queue.
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            yes, safe: resuming a running queue changes nothing."""
        path = f"queues/{queue_segment(queue)}/resume"
        return cast(QueueInfo, (yield from fetch("POST", path, idempotent=True)))

    def set_rate_limit(self, queue: str, max: int, duration_ms: int) -> Plan[QueueInfo]:
        """Hand out at most ``max`` jobs of the queue per ``duration_ms``, across servers.

        Args:
            queue: the queue's name.
            max: jobs per window.
            duration_ms: the window.

        Returns:
            The queue with its ``rate_limit``.

        Raises:
            InvalidInput: a bad number.
            Forbidden: the token lacks ``admin`` on the queue.
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            yes, safe: it sets absolute values."""
        body = {"max": max, "duration_ms": duration_ms}
        return (yield from _setting("PUT", queue, "rate-limit", body))

    def remove_rate_limit(self, queue: str) -> Plan[QueueInfo]:
        """Remove the queue's rate limit.

        Args:
            queue: the queue's name.

        Returns:
            The queue, without a rate limit.

        Raises:
            Forbidden: the token lacks ``admin`` on the queue.
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            yes, safe: removing it twice leaves it removed."""
        return (yield from _setting("DELETE", queue, "rate-limit"))

    def set_concurrency(self, queue: str, max: int) -> Plan[QueueInfo]:
        """At most ``max`` active jobs in the queue, across servers.

        Args:
            queue: the queue's name.
            max: active jobs at once.

        Returns:
            The queue with its ``concurrency``.

        Raises:
            InvalidInput: a bad number.
            Forbidden: the token lacks ``admin`` on the queue.
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            yes, safe: it sets an absolute value."""
        return (yield from _setting("PUT", queue, "concurrency", {"max": max}))

    def remove_concurrency(self, queue: str) -> Plan[QueueInfo]:
        """Remove the queue's concurrency limit.

        Args:
            queue: the queue's name.

        Returns:
            The queue, without a concurrency limit.

        Raises:
            Forbidden: the token lacks ``admin`` on the queue.
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            yes, safe: removing it twice leaves it removed."""
        return (yield from _setting("DELETE", queue, "concurrency"))

    def set_group_concurrency(self, queue: str, max: int) -> Plan[QueueInfo]:
        """At most ``max`` active jobs per group (``group`` on push) in the queue.

        Args:
            queue: the queue's name.
            max: active jobs per group at once.

        Returns:
            The queue with its ``group_concurrency``.

        Raises:
            InvalidInput: a bad number.
            Forbidden: the token lacks ``admin`` on the queue.
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            yes, safe: it sets an absolute value."""
        return (yield from _setting("PUT", queue, "group-concurrency", {"max": max}))

    def remove_group_concurrency(self, queue: str) -> Plan[QueueInfo]:
        """Back to one active job per group.

        Args:
            queue: the queue's name.

        Returns:
            The queue, its ``group_concurrency`` 1.

        Raises:
            Forbidden: the token lacks ``admin`` on the queue.
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            yes, safe: removing it twice leaves it removed."""
        return (yield from _setting("DELETE", queue, "group-concurrency"))

    def set_schema(self, queue: str, schema: Mapping[str, Any]) -> Plan[QueueInfo]:
        """Every job's data must then match this JSON Schema (2020-12).

        Args:
            queue: the queue's name.
            schema: the JSON Schema (local ``$ref`` only).

        Returns:
            The queue with its ``schema``.

        Raises:
            InvalidInput: the schema is not valid.
            Forbidden: the token lacks ``admin`` on the queue.
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            yes, safe: it sets an absolute value."""
        return (yield from _setting("PUT", queue, "schema", {"schema": dict(schema)}))

    def remove_schema(self, queue: str) -> Plan[QueueInfo]:
        """Remove the queue's JSON Schema.

        Args:
            queue: the queue's name.

        Returns:
            The queue, without a schema.

        Raises:
            Forbidden: the token lacks ``admin`` on the queue.
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            yes, safe: removing it twice leaves it removed."""
        return (yield from _setting("DELETE", queue, "schema"))

    def me(self) -> Plan[Me]:
        """The token itself: its name, family, expiry, addresses and permissions.

        Returns:
            What the server knows of the token (never its secret).

        Raises:
            Unauthorized: the token is missing, unknown, expired or revoked.
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            yes, safe: a read."""
        return cast(Me, (yield from fetch("GET", "me", idempotent=True)))

    def erase(
        self,
        subject: str,
        *,
        mode: Literal["redact", "delete"] = "redact",
        reason: str = "",
        execute: bool = False,
    ) -> Plan[ErasureResult]:
        """GDPR erasure of a data subject's jobs, a dry run unless ``execute``.

        Only in the queues where the token has the verb ``erase`` (never implied by
        ``*``); the queues it sees but may not erase come back under ``skipped``.

        Args:
            subject: the data subject.
            mode: ``redact`` the payloads or ``delete`` the jobs.
            reason: goes into the audit event and the receipt.
            execute: False only counts what would be erased.

        Returns:
            The counts per queue and state, the fields redacted, the queues held or
            skipped, and the receipt id when executed.

        Raises:
            Forbidden: the token may erase nowhere.
            InvalidInput: a bad subject or mode.
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            a dry run yes, safe: it changes nothing; an executed one only when it cannot
            have been acted on, so one receipt stands for it."""
        body = {"subject": subject, "mode": mode, "reason": reason, "execute": execute}
        answer = yield from fetch("POST", "compliance/erasures", body=body, idempotent=not execute)
        return cast(ErasureResult, answer)
