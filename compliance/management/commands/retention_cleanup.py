"""``manage.py retention_cleanup [--dry-run] [--batch-size N]``: apply the retention
policies. Waiting jobs past their ttl become expired; finished jobs older than their
queue's policy are deleted in fixed batches, each batch one transaction with its own
audit event (``clean``, ``command:retention_cleanup``), so an interruption leaves no
batch half done or unrecorded; audit events older than the audit policy are retired
behind a checkpoint. Queues under legal hold are skipped and listed. ``--dry-run``
prints what would go and changes nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from compliance.audit import Actor
from compliance.audit.chain import seal_all
from compliance.audit.services import audit_retire
from compliance.models import AuditEvent, RetentionPolicy, RetentionTarget
from compliance.retention import retention_plan
from queues.pulling import jobs_expire_ttl
from queues.services import jobs_clean


class Command(BaseCommand):
    help = "Apply the retention policies (expire, delete old finished jobs, retire old audit)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="show, change nothing")
        parser.add_argument("--batch-size", type=int, default=1000, help="jobs per batch")

    def handle(self, *args: Any, **options: Any) -> None:
        size, dry = options["batch_size"], options["dry_run"]
        if not 1 <= size <= 10_000:
            raise CommandError("--batch-size must be 1 to 10000")
        actor = Actor.command("retention_cleanup")
        now = timezone.now()
        if not dry:
            expired = 0
            while batch := jobs_expire_ttl(actor=actor):
                expired += batch
            self.stdout.write(f"Expired {expired} waiting job(s) past their ttl.")
        plan = retention_plan(now=now)
        for name in plan.held:
            self.stdout.write(f"{name}: under legal hold, skipped")
        total = 0
        for due in plan.due:
            verb = "would delete" if dry else "deleted"
            done = due.count if dry else self._delete(due, size, actor)
            total += done
            self.stdout.write(
                f"{due.queue.name}: {verb} {done} {due.state} job(s) finished before "
                f"{due.cutoff:%Y-%m-%d %H:%M} ({due.max_age_days} days)"
            )
        self.stdout.write(f"{'Would delete' if dry else 'Deleted'} {total} job(s) in all.")
        self._audit(now, dry, actor)

    def _delete(self, due: Any, size: int, actor: Actor) -> int:
        left, done = due.count, 0
        while left > 0:
            cleaned = jobs_clean(
                queues=[due.queue],
                states=[due.state],
                finished_before_=due.cutoff,
                limit=min(size, left),
                actor=actor,
                reason=f"retention policy: {due.max_age_days} days",
            )
            if not cleaned.total:
                break
            done += cleaned.total
            left -= cleaned.total
        return done

    def _audit(self, now: Any, dry: bool, actor: Actor) -> None:
        policy = RetentionPolicy.objects.filter(target=RetentionTarget.AUDIT).first()
        if policy is None:
            return
        cutoff = now - timedelta(days=policy.max_age_days)
        if dry:
            old = AuditEvent.objects.filter(sealed_at__lt=cutoff).count()
            self.stdout.write(
                f"Would retire {old} sealed audit event(s) sealed before {cutoff:%Y-%m-%d}."
            )
            return
        seal_all()
        removed = audit_retire(cutoff=cutoff, actor=actor)
        self.stdout.write(f"Retired {removed} audit event(s) sealed before {cutoff:%Y-%m-%d}.")
