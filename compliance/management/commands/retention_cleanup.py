"""``manage.py retention_cleanup [--dry-run] [--batch-size N] [--rest R]``: apply the retention
policies (compliance.retention.retention_run, as the daily schedule does). Waiting jobs
past their ttl become expired; finished jobs older than their queue's policy are deleted
in fixed batches, each batch one transaction with its own audit event (``clean``,
``command:retention_cleanup``), so an interruption leaves no batch half done or
unrecorded, and it rests R times a batch's time between batches (default
``RETENTION_REST``, 1.0); audit events older than the audit policy are retired behind a checkpoint.
Queues under legal hold are skipped and listed. ``--dry-run`` prints what would go and
changes nothing."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from compliance.audit import Actor
from compliance.retention import MAX_REST, RetentionReport, retention_run
from kernel import limits


class Command(BaseCommand):
    help = "Apply the retention policies (expire, delete old finished jobs, retire old audit)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="show, change nothing")
        parser.add_argument("--batch-size", type=int, default=1000, help="jobs per batch")
        parser.add_argument(
            "--rest",
            type=float,
            default=None,
            help="rest this many times a batch's time before the next batch "
            "(default RETENTION_REST, 1.0; 0: none)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        size, dry, rest = options["batch_size"], options["dry_run"], options["rest"]
        if not 1 <= size <= limits.MAX_CLEAN_LIMIT:
            raise CommandError(f"--batch-size must be 1 to {limits.MAX_CLEAN_LIMIT}")
        if rest is not None and not 0 <= rest <= MAX_REST:
            raise CommandError(f"--rest must be 0 to {MAX_REST:g}")
        report = RetentionReport(dry_run=dry)
        try:
            retention_run(
                actor=Actor.command("retention_cleanup"),
                batch_size=size,
                dry_run=dry,
                report=report,
                rest=rest,
            )
        finally:  # a run that fails part way still says what it did
            for line in report_lines(report):
                self.stdout.write(line)


def report_lines(report: RetentionReport) -> list[str]:
    """The run, as the lines an operator reads."""
    dry = report.dry_run
    lines = []
    if report.expired is not None:
        lines.append(f"Expired {report.expired} waiting job(s) past their ttl.")
    lines += [f"{name}: under legal hold, skipped" for name in report.held]
    verb = "would delete" if dry else "deleted"
    lines += [
        f"{item.queue}: {verb} {item.count} {item.state} job(s) finished before "
        f"{item.cutoff:%Y-%m-%d %H:%M} ({item.max_age_days} days)"
        for item in report.deleted
    ]
    lines.append(f"{'Would delete' if dry else 'Deleted'} {report.total} job(s) in all.")
    if report.audit is not None and dry:
        lines.append(
            f"Would retire {report.audit.count} sealed audit event(s) sealed before "
            f"{report.audit.cutoff:%Y-%m-%d}."
        )
    elif report.audit is not None:
        lines.append(
            f"Retired {report.audit.count} audit event(s) sealed before "
            f"{report.audit.cutoff:%Y-%m-%d}."
        )
    return lines
