"""Errors of the queue engine, raised by services and selectors. The base class and the
general ones (invalid input, too large, unavailable) live in kernel.problems."""

from __future__ import annotations

from kernel.problems import FlashqError, ServiceUnavailable


class JobNotFound(FlashqError):
    status = 404
    code = "job_not_found"
    title = "Job not found"

    def __init__(self, detail: str = "No such job.") -> None:
        super().__init__(detail)


class QueueNotFound(FlashqError):
    status = 404
    code = "queue_not_found"
    title = "Queue not found"

    def __init__(self, detail: str = "No such queue.") -> None:
        super().__init__(detail)


class WebhookNotFound(FlashqError):
    status = 404
    code = "webhook_not_found"
    title = "Webhook not found"

    def __init__(self, detail: str = "No such webhook.") -> None:
        super().__init__(detail)


class ScheduleNotFound(FlashqError):
    status = 404
    code = "schedule_not_found"
    title = "Schedule not found"

    def __init__(self, detail: str = "No such schedule.") -> None:
        super().__init__(detail)


class LeaseConflict(FlashqError):
    status = 409
    code = "lease_conflict"
    title = "Lease conflict"


class StateConflict(FlashqError):
    status = 409
    code = "state_conflict"
    title = "State conflict"


class KeyConflict(FlashqError):
    """An unfinished job holds the idempotency key, pushed by another token family: the
    answer names neither the job nor anything in it."""

    status = 409
    code = "key_conflict"
    title = "Key conflict"

    def __init__(self) -> None:
        super().__init__(
            "An unfinished job of this queue, pushed by another token, holds this key."
        )


class OwnerRevoked(FlashqError):
    """A schedule's tick, when no token of the family that saved it is live any more
    (revoked, expired or deleted): its jobs would be pushed as nobody's."""

    status = 403
    code = "owner_revoked"
    title = "Owner revoked"

    def __init__(self) -> None:
        super().__init__("No live token is left in the family that saved this schedule.")


class UnknownDependency(FlashqError):
    """A ``depends_on`` id names no job the caller may read: unknown, or in a queue where
    it lacks ``getJob``. One answer for both, so a push cannot probe for other tenants'
    job ids."""

    status = 422
    code = "unknown_dependency"
    title = "Unknown dependency"


class WaitTooDeep(FlashqError):
    """A push whose job would wait on a chain of jobs deeper than MAX_WAIT_DEPTH (its
    ``depends_on``, theirs, ...): whatever failed the chain's end would fail every job
    of it in one transaction."""

    status = 422
    code = "wait_too_deep"
    title = "Waits too deep"


class TooManyStreams(ServiceUnavailable):
    """This process, or this token family, already holds as many long-lived requests
    (waiting pulls, job waits, event streams) as it may: 503 with Retry-After."""

    code = "too_many_streams"
    title = "Too many open streams"

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(
            "This server already holds as many waiting requests as it allows, in all or "
            "for this token; retry later."
        )
        self.retry_after_seconds = retry_after_seconds
