"""What the scheduler (django-q2's ``qcluster``) runs. Each task takes no arguments and
acts through the same services and commands as an operator would, under a
``system:<task>`` or ``command:<name>`` actor; nothing about a job but its id ever goes
into a django-q2 task row."""

from __future__ import annotations

from io import StringIO

from django.core.management import call_command

from compliance.audit import Actor
from compliance.audit.chain import seal_all
from queues.pulling import sweep


def seal_audit() -> int:
    """Seal the audit events written since the last run into the keyed hash chain
    (the head goes to AUDIT_ANCHOR_FILE too, when set)."""
    return seal_all()


def sweep_leases() -> str:
    requeued, expired = sweep(actor=Actor.system("scheduled-sweep"))
    return f"requeued {requeued}, expired {expired}"


def run_retention() -> str:
    out = StringIO()
    call_command("retention_cleanup", stdout=out)
    return out.getvalue()
