"""``manage.py gdpr_erase <subject> [--execute --reason TEXT] [--mode redact|delete]``:
GDPR erasure of every job about a data subject (compliance.erasure). A dry run by default:
it prints, per queue and state, how many jobs and which fields would be redacted or
deleted, and changes nothing. ``--execute`` applies it and writes a receipt. It acts on
every queue (running it is already the right to all of them) and changes job rows only:
the audit trail, django-auditlog history and django-q2's rows never hold a payload or a
subject, and are left as they are."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from compliance.audit import Actor
from compliance.erasure import ErasureRefused, subject_erase
from compliance.erasure_schedules import SCHEDULES


class Command(BaseCommand):
    help = (
        "Find, and with --execute redact or delete, every job about a data subject in "
        "every queue (queues under legal hold are skipped). Changes job rows only."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("subject", help="the data subject's identifier (e.g. a user id)")
        parser.add_argument("--execute", action="store_true", help="apply it (default: dry run)")
        parser.add_argument("--reason", default="", help="why (a ticket or request reference)")
        parser.add_argument("--mode", choices=["redact", "delete"], default="redact")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            outcome = subject_erase(
                subject=options["subject"],
                mode=options["mode"],
                reason=options["reason"],
                execute=options["execute"],
                actor=Actor.command("gdpr_erase"),
            )
        except ErasureRefused as exc:
            raise CommandError(str(exc)) from None
        verb = outcome.done_to_jobs if outcome.executed else f"would be {outcome.done_to_jobs}"
        deleted = "deleted" if outcome.executed else "would be deleted"  # schedules, any mode
        for queue, states in sorted(outcome.counts.items()):
            for state, count in sorted(states.items()):
                noun = f"schedule(s) {deleted}" if state == SCHEDULES else f"job(s) {verb}"
                self.stdout.write(f"{queue} [{state}]: {count} {noun}")
            if outcome.mode == "redact":
                fields = ", ".join(outcome.fields.get(queue, [])) or "none found"
                self.stdout.write(f"{queue}: fields {fields}; the subject identifier removed")
        for queue in outcome.held:
            self.stdout.write(f"{queue}: under legal hold, skipped")
        self.stdout.write(f"other stores: {outcome.other_stores}")
        if outcome.schedules:
            self.stdout.write(f"{outcome.schedules} schedule(s) {deleted}.")
        if not outcome.total and not outcome.schedules:
            self.stdout.write("Nothing found about this subject.")
        elif outcome.executed and outcome.receipt is not None:
            self.stdout.write(f"{outcome.total} job(s) {verb}; receipt {outcome.receipt.pk}.")
        else:
            self.stdout.write(
                f"Dry run: {outcome.total} job(s). Add --execute --reason ... to apply."
            )
