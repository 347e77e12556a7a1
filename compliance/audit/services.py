"""Compliance operations that act on the audit trail itself. Like every service, each
records its own audit event with the actor who asked."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from django.db import transaction
from django.db.models import QuerySet

from .chain import retire_before
from .models import AuditEvent
from .record import Action, Actor, audit_record
from .selectors import audit_events_naming_job

EXPORT_FORMATS = ("csv", "jsonl")
EXPORT_COLUMNS = (
    "id",
    "seq",
    "created_at",
    "action",
    "outcome",
    "status",
    "queue",
    "actor",
    "token_id",
    "user_id",
    "client_ip",
    "request_id",
    "client_request_id",
    "job_ids",
    "details",
    "prev_hash",
    "hash",
)
_BATCH = 2000
# Cells a spreadsheet would run as a formula (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class Writable(Protocol):
    def write(self, text: str, /) -> Any: ...


@dataclass(frozen=True)
class ExportFilter:
    """Which events an export holds: a time range, optional exact matches, and (from
    the admin) the audit list's own filters, already applied to ``within``."""

    since: datetime
    until: datetime
    queue: str = ""
    actor: str = ""
    action: str = ""
    job_id: str = ""
    # The audit list's filters the export was started from (names and values as in the
    # list's URL; its search term is not repeated here, only whether there was one).
    list_filters: dict[str, str] = field(default_factory=dict)
    within: QuerySet[AuditEvent] | None = None

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "queue": self.queue,
            "actor": self.actor,
        }
        extra = {"action": self.action, "job_id": self.job_id, "list_filters": self.list_filters}
        return described | {name: value for name, value in extra.items() if value}


def _selected(selection: ExportFilter) -> Iterator[AuditEvent]:
    rows = selection.within if selection.within is not None else AuditEvent.objects.all()
    rows = rows.filter(created_at__gte=selection.since, created_at__lt=selection.until)
    if selection.queue:
        rows = rows.filter(queue=selection.queue)
    if selection.actor:
        rows = rows.filter(actor=selection.actor)
    if selection.action:
        rows = rows.filter(action=selection.action)
    if selection.job_id:
        rows = rows.filter(audit_events_naming_job(job_id=selection.job_id))
    last = 0
    while True:
        batch = list(rows.filter(id__gt=last).order_by("id")[:_BATCH])
        if not batch:
            return
        yield from batch
        last = batch[-1].pk


def _record(event: AuditEvent) -> dict[str, Any]:
    row = {name: getattr(event, name) for name in EXPORT_COLUMNS}
    row["created_at"] = event.created_at.isoformat()
    return row


def csv_cell(value: Any) -> Any:
    """A value as a CSV cell that no spreadsheet runs as a formula."""
    if isinstance(value, list | dict):
        value = json.dumps(value, separators=(",", ":"), sort_keys=True)
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return "" if value is None else value


def audit_export(*, selection: ExportFilter, fmt: str, out: Writable, actor: Actor) -> int:
    """Write the selected events (oldest first) to ``out`` as CSV or JSON Lines; the
    export itself is recorded, with its filters and count, once written."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}")
    count = 0
    writer = csv.writer(out) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(EXPORT_COLUMNS)
    for event in _selected(selection):
        record = _record(event)
        if writer is not None:
            writer.writerow([csv_cell(record[name]) for name in EXPORT_COLUMNS])
        else:
            out.write(json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n")
        count += 1
    with transaction.atomic():
        audit_record(
            actor=actor,
            action=Action.AUDIT_EXPORT,
            queue=selection.queue,
            details={**selection.describe(), "format": fmt, "count": count},
        )
    return count


def audit_retire(*, cutoff: datetime, actor: Actor, limit: int = 1000) -> int:
    """Retention of the audit trail: remove sealed events created before ``cutoff``,
    batch by batch, each batch behind a checkpoint; one audit event with the count."""
    total = 0
    while removed := retire_before(
        cutoff, reason=f"retention before {cutoff.isoformat()}", limit=limit
    ):
        total += removed
    with transaction.atomic():
        audit_record(
            actor=actor,
            action=Action.AUDIT_RETIRE,
            details={"before": cutoff.isoformat(), "removed": total},
        )
    return total
