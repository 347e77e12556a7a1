"""A queue's schedules: repeatable jobs pushed on a cron or an interval."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, cast

from .._policy import Call, Plan
from ..shapes import Backoff, JobSummary
from .base import CallsBase, fetch, iso, queue_segment


def _path(queue: str, name: str, action: str = "") -> str:
    return f"queues/{queue_segment(queue)}/schedules/{queue_segment(name)}" + action


def _reason(reason: str) -> dict[str, str]:
    return {"reason": reason} if reason else {}


class ScheduleCalls(CallsBase):
    def put_schedule(
        self,
        queue: str,
        name: str,
        *,
        cron: str | None = None,
        every_ms: int | None = None,
        timezone: str = "UTC",
        data: Mapping[str, Any],
        priority: int | None = None,
        max_attempts: int | None = None,
        backoff: Backoff | Mapping[str, Any] | None = None,
        timeout_ms: int | None = None,
        tags: Sequence[str] | None = None,
        subject: str | None = None,
        start_at: datetime | str | None = None,
        end_at: datetime | str | None = None,
        catch_up: Literal["none", "latest", "all"] | None = None,
        max_catch_up: int | None = None,
    ) -> Plan[dict[str, Any]]:
        """Create or replace the schedule ``name`` of a queue.

        The token needs the verbs ``schedule`` and ``push`` on the queue.

        Args:
            queue: the queue's name.
            name: the schedule's name in the queue.
            cron: 5 fields, or 6 with seconds first, read in ``timezone``.
            every_ms: an interval instead of ``cron``.
            timezone: an IANA zone for ``cron``.
            data: the payload of each job.
            priority: each job's priority.
            max_attempts: each job's attempts.
            backoff: each job's backoff.
            timeout_ms: each job's processing deadline, as push's.
            tags: each job's tags.
            subject: each job's data subject.
            start_at: no tick before this (a datetime with its offset, or ISO text).
            end_at: no tick after this.
            catch_up: ticks missed while the server was down: ``none``, ``latest`` or
                ``all``.
            max_catch_up: with ``all``, at most this many.

        Returns:
            The schedule with its ``next_run_at``.

        Raises:
            InvalidInput: a bad cron, zone, time or template; ``errors`` names it.
            Forbidden: the token lacks ``schedule`` or ``push`` on the queue.
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            yes, safe: a replace never fires a tick already fired."""
        data = self.seal(queue, data)
        body: dict[str, Any] = {"timezone": timezone, "data": dict(data)}
        options: dict[str, Any] = {
            "cron": cron,
            "every_ms": every_ms,
            "priority": priority,
            "max_attempts": max_attempts,
            "backoff": None if backoff is None else dict(backoff),
            "timeout": timeout_ms,
            "tags": None if tags is None else list(tags),
            "subject": subject,
            "start_at": iso(start_at),
            "end_at": iso(end_at),
            "catch_up": catch_up,
            "max_catch_up": max_catch_up,
        }
        body.update({key: value for key, value in options.items() if value is not None})
        answer = yield from fetch("PUT", _path(queue, name), body=body, idempotent=True)
        return cast(dict[str, Any], answer)

    def get_schedule(self, queue: str, name: str) -> Plan[dict[str, Any]]:
        """One schedule.

        Args:
            queue: the queue's name.
            name: the schedule's name.

        Returns:
            The schedule with its ``next_run_at``.

        Raises:
            NotFound: no such schedule.
            Forbidden: the token lacks ``schedule`` on the queue.
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            yes, safe: a read."""
        return cast(dict[str, Any], (yield from fetch("GET", _path(queue, name), idempotent=True)))

    def list_schedules(self, queue: str) -> Plan[list[dict[str, Any]]]:
        """The queue's schedules by name (none for a queue not yet made).

        Args:
            queue: the queue's name.

        Returns:
            The schedules.

        Raises:
            Forbidden: the token lacks ``schedule`` on the queue.
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            yes, safe: a read."""
        path = f"queues/{queue_segment(queue)}/schedules"
        answer = yield from fetch("GET", path, idempotent=True)
        return cast(list[dict[str, Any]], answer["schedules"])

    def delete_schedule(self, queue: str, name: str, *, reason: str = "") -> Plan[None]:
        """Delete a schedule; the jobs it pushed stay.

        Args:
            queue: the queue's name.
            name: the schedule's name.
            reason: goes into the audit event.

        Raises:
            NotFound: no such schedule.
            Forbidden: the token lacks ``schedule`` on the queue.
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            yes, safe: deleting twice leaves it deleted (the retry's 404 is raised)."""
        # The answer has no body to read.
        yield Call(method="DELETE", path=_path(queue, name), body=_reason(reason), idempotent=True)

    def pause_schedule(self, queue: str, name: str, *, reason: str = "") -> Plan[dict[str, Any]]:
        """Stop a schedule's ticks until it is resumed.

        Args:
            queue: the queue's name.
            name: the schedule's name.
            reason: goes into the audit event.

        Returns:
            The schedule, paused.

        Raises:
            NotFound: no such schedule.
            Forbidden: the token lacks ``schedule`` on the queue.
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            yes, safe: pausing a paused schedule changes nothing."""
        path = _path(queue, name, "/pause")
        answer = yield from fetch("POST", path, body=_reason(reason), idempotent=True)
        return cast(dict[str, Any], answer)

    def resume_schedule(self, queue: str, name: str, *, reason: str = "") -> Plan[dict[str, Any]]:
        """Fire again from the first tick after now (ticks missed while paused are not).

        Args:
            queue: the queue's name.
            name: the schedule's name.
            reason: goes into the audit event.

        Returns:
            The schedule, running, with its ``next_run_at``.

        Raises:
            NotFound: no such schedule.
            Forbidden: the token lacks ``schedule`` on the queue.
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            yes, safe: resuming a running schedule changes nothing."""
        path = _path(queue, name, "/resume")
        answer = yield from fetch("POST", path, body=_reason(reason), idempotent=True)
        return cast(dict[str, Any], answer)

    def trigger_schedule(self, queue: str, name: str, *, reason: str = "") -> Plan[JobSummary]:
        """Push one job from the schedule's template now, paused or not.

        Args:
            queue: the queue's name.
            name: the schedule's name.
            reason: goes into the audit event.

        Returns:
            The job pushed, as a summary.

        Raises:
            NotFound: no such schedule.
            Forbidden: the token lacks ``schedule`` or ``push`` on the queue.
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            only when the request cannot have been acted on: a repeat would push a
            second job."""
        path = _path(queue, name, "/trigger")
        answer = yield from fetch("POST", path, body=_reason(reason), idempotent=False)
        return cast(JobSummary, answer)
