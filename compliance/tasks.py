"""What the scheduler (django-q2's ``qcluster``) runs. Each task takes no arguments and
calls the same service as the operator's command for it (no ``call_command``), under a
``system:<task>`` or ``command:<name>`` actor; nothing about a job but its id ever goes
into a django-q2 task row."""

from __future__ import annotations

from compliance.audit import Actor
from compliance.audit.chain import seal_all
from compliance.retention import retention_run
from queues.events.log import prune
from queues.pulling import sweep
from queues.rollup import rollup_prune
from queues.services import schedules_fire


def seal_audit() -> int:
    """Seal the audit events written since the last run into the keyed hash chain
    (the head goes to AUDIT_ANCHOR_FILE too, when set)."""
    return seal_all()


def sweep_leases() -> str:
    requeued, expired = sweep(actor=Actor.system("scheduled-sweep"))
    return f"requeued {requeued}, expired {expired}"


def run_retention() -> str:
    """The daily retention run, under the same actor as ``manage.py retention_cleanup``
    (its events read the same whichever started it)."""
    report = retention_run(actor=Actor.command("retention_cleanup"))
    retired = report.audit.count if report.audit else 0
    return (
        f"expired {report.expired}, deleted {report.total}, "
        f"held {len(report.held)}, retired {retired} audit event(s)"
    )


def fire_schedules() -> str:
    """The safety net behind ``manage.py run_scheduler``: fire what is due (each tick
    still makes one job, whoever fires it)."""
    return f"fired {schedules_fire(actor=Actor.system('scheduled-fire'))} job(s)"


def prune_events() -> str:
    """Every minute: the job event log keeps EVENT_LOG_SECONDS and at most
    EVENT_LOG_MAX_ROWS (it feeds event streams and webhooks; it is not an audit trail).
    Deleted in batches, oldest first, each batch marking how far it went."""
    return f"pruned {prune()} event(s)"


def prune_rollup() -> str:
    """Every minute: fold the per-minute rollup's stripes of past minutes into one row
    each and drop minutes older than FLASHQ_STATS_DAYS (counts only: nothing personal)."""
    folded, deleted = rollup_prune()
    return f"folded {folded}, deleted {deleted} rollup row(s)"
