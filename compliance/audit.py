"""The audit record. Floor 1: knows nothing of jobs; takes plain values.

``audit_record`` writes one ``AuditEvent`` in the caller's transaction (so an allowed
change and its record commit together) and, once that transaction commits, logs the same
event as one JSON line on the ``flashq.audit`` logger."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from .models import AuditEvent

logger = logging.getLogger("flashq.audit")


@dataclass(frozen=True)
class Actor:
    """Who acted, from where, in which request."""

    name: str
    token_id: int | None = None
    client_ip: str | None = None
    request_id: str = ""


def outcome_for_status(status: int) -> str:
    if status < 400:
        return AuditEvent.Outcome.OK
    if status in (401, 403, 429):
        return AuditEvent.Outcome.DENIED
    if status == 404:
        return AuditEvent.Outcome.NOT_FOUND
    if status == 409:
        return AuditEvent.Outcome.CONFLICT
    if status < 500:
        return AuditEvent.Outcome.INVALID
    return AuditEvent.Outcome.ERROR


def _storable(value: Any) -> Any:
    """Details come partly from the request (field names in error paths): no NUL and no
    lone surrogate may reach the jsonb column, or the audit write itself would fail."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_storable(key): _storable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(item) for item in value]
    return value


def audit_record(
    *,
    actor: Actor,
    action: str,
    status: int,
    queue: str = "",
    job_ids: Iterable[object] = (),
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    event = AuditEvent.objects.create(
        action=action,
        queue=queue,
        job_ids=[str(job_id) for job_id in job_ids],
        token_id=actor.token_id,
        actor=actor.name,
        client_ip=actor.client_ip,
        outcome=outcome_for_status(status),
        status=status,
        request_id=actor.request_id,
        details=_storable(dict(details or {})),
    )
    transaction.on_commit(lambda: logger.info(_json_line(event)))
    return event


def _json_line(event: AuditEvent) -> str:
    return json.dumps(
        {
            "time": event.created_at.isoformat(),
            "event_id": event.pk,
            "action": event.action,
            "queue": event.queue,
            "job_ids": event.job_ids,
            "token_id": event.token_id,
            "actor": event.actor,
            "client_ip": event.client_ip,
            "outcome": event.outcome,
            "status": event.status,
            "request_id": event.request_id,
            "details": event.details,
        },
        separators=(",", ":"),
    )
