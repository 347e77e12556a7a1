"""Domain errors, raised by services and selectors and turned into problem+json by
queues.api.problems. Each has a stable ``code`` and an HTTP status."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    path: str  # JSON Pointer into the request body, e.g. /jobs/3/priority
    message: str


class FlashqError(Exception):
    status = 400
    code = "bad_request"
    title = "Bad request"

    def __init__(self, detail: str, *, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []


class InvalidInput(FlashqError):
    status = 400
    code = "invalid_input"
    title = "Invalid input"


class PayloadTooLarge(FlashqError):
    status = 413
    code = "payload_too_large"
    title = "Payload too large"


class LengthRequired(FlashqError):
    status = 411
    code = "length_required"
    title = "Length required"


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


class LeaseConflict(FlashqError):
    status = 409
    code = "lease_conflict"
    title = "Lease conflict"


class StateConflict(FlashqError):
    status = 409
    code = "state_conflict"
    title = "State conflict"
