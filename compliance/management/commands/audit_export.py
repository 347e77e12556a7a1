"""``manage.py audit_export --since 2026-11-01 --until 2026-12-01 [--queue Q]
[--actor token:name] [--action A] [--job-id UUID] --format csv|jsonl [--output FILE]``:
the selected audit events, oldest first, to stdout or a file (created 0600). The export
is itself audited."""

from __future__ import annotations

import os
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_date, parse_datetime

from compliance.audit import Actor
from compliance.audit.services import EXPORT_FORMATS, ExportFilter, audit_export


def moment(text: str) -> datetime:
    """An ISO date (midnight UTC) or date-time (UTC unless it says otherwise)."""
    try:
        parsed = parse_datetime(text)
        if parsed is None and (day := parse_date(text)) is not None:
            parsed = datetime(day.year, day.month, day.day)
    except ValueError:
        parsed = None
    if parsed is None:
        raise CommandError(f"not an ISO date or date-time: {text[:40]!r}")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = "Export audit events in a time range as CSV or JSON Lines (the export is audited)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", required=True, help="from (inclusive), ISO date/time")
        parser.add_argument("--until", required=True, help="to (exclusive), ISO date/time")
        parser.add_argument("--queue", default="", help="only this queue's events")
        parser.add_argument("--actor", default="", help="only this actor, e.g. token:billing")
        parser.add_argument("--action", default="", help="only this action, e.g. token.revoke")
        parser.add_argument("--job-id", default="", help="only events naming this job")
        parser.add_argument("--format", choices=EXPORT_FORMATS, default="jsonl")
        parser.add_argument("--output", help="a file to write (default: stdout)")

    def handle(self, *args: Any, **options: Any) -> None:
        job_id = options["job_id"]
        if job_id:
            try:
                job_id = str(uuid.UUID(job_id))
            except ValueError:
                raise CommandError("--job-id must be a job's UUID") from None
        selection = ExportFilter(
            since=moment(options["since"]),
            until=moment(options["until"]),
            queue=options["queue"],
            actor=options["actor"],
            action=options["action"],
            job_id=job_id,
        )
        if selection.until <= selection.since:
            raise CommandError("--until must be after --since")
        actor = Actor.command("audit_export")
        path = options["output"]
        if path:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", newline="") as out:
                count = audit_export(
                    selection=selection, fmt=options["format"], out=out, actor=actor
                )
            sys.stderr.write(f"Exported {count} event(s) to {path}.\n")
        else:
            self.stdout.ending = ""
            audit_export(selection=selection, fmt=options["format"], out=self.stdout, actor=actor)
