"""Retention of finished jobs: which policy applies to a queue, what is due, and the
run that applies the policies.

``retention_run`` is the run, for ``manage.py retention_cleanup`` and the daily schedule
alike, in four steps: expire waiting jobs past their ttl, plan what the policies make
due, delete it batch by batch, then seal the audit trail and retire the events past the
audit policy. Each batch is one ``jobs_clean`` (the one path for deleting finished jobs:
one transaction, one audit event with the counts per queue and state), so a failure
between batches leaves every batch either done and recorded or not started;
``POST /queues/{pattern}/clean`` calls it once per request. Queues under legal hold are
never touched, only reported. A dry run changes nothing and reports what would go.

Between batches the run rests ``rest`` times as long as the batch took
(``RETENTION_REST``, default 1.0), as PostgreSQL's cost-based vacuum delay does: a
day's worth of deletes then shares the machine and the WAL with the pushes and pulls
beside it instead of taking them over, and a run takes about twice as long. A run rests
at most a quarter of django-q2's task timeout in all (150 s of the 600): the daily task
runs on the scheduler's one worker, so a long run delays the lease sweep and sealing
behind it, and the timeout would kill it before its audit step."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from compliance.audit import Action, Actor, audit_record
from compliance.audit.chain import seal_all
from compliance.audit.services import audit_retire
from compliance.models import AuditEvent, RetentionPolicy, RetentionTarget
from kernel import limits
from kernel.limits import INTERNAL_QUEUE_PREFIX
from queues.models import Queue
from queues.pulling import jobs_expire_ttl
from queues.services import FINISHED, finished_before, jobs_clean
from security.access import WILDCARD, pattern_matches

#: The longest rest, in batches' times, a run may be asked for.
MAX_REST = 10.0
_clock, _sleep = time.monotonic, time.sleep  # replaced by tests


@dataclass
class _Pacer:
    """Rests ``rest`` times each batch's time, ``budget`` seconds at most in all."""

    rest: float
    budget: float

    def after(self, batch_seconds: float) -> None:
        pause = min(self.rest * batch_seconds, self.budget)
        if pause > 0:
            self.budget -= pause
            _sleep(pause)


def rest_budget() -> float:
    """The most a run rests in all: a quarter of django-q2's task timeout."""
    return float(settings.Q_CLUSTER.get("timeout") or 600) / 4


def policy_for(
    policies: Iterable[RetentionPolicy], queue: str, target: str
) -> RetentionPolicy | None:
    """The most specific policy for ``target`` whose pattern matches ``queue``. The
    engine's internal queues (webhook deliveries), which no pattern reaches, are kept by
    the catch-all ``*`` policies."""
    matching = [
        policy
        for policy in policies
        if policy.target == target and _covers(policy.queue_pattern, queue)
    ]
    return max(matching, key=lambda policy: policy.specificity, default=None)


def _covers(pattern: str, queue: str) -> bool:
    if queue.startswith(INTERNAL_QUEUE_PREFIX):
        return pattern == WILDCARD
    return pattern_matches(pattern, queue)


@dataclass(frozen=True)
class Due:
    queue: Queue
    state: str
    cutoff: datetime
    max_age_days: int
    count: int


@dataclass
class Plan:
    due: list[Due] = field(default_factory=list)
    held: list[str] = field(default_factory=list)


def retention_plan(*, now: datetime | None = None) -> Plan:
    """What the policies make due now, per queue and state (queues on hold apart)."""
    now = now or timezone.now()
    policies = list(RetentionPolicy.objects.exclude(target=RetentionTarget.AUDIT))
    plan = Plan()
    for queue in Queue.objects.order_by("name"):
        if queue.legal_hold:
            plan.held.append(queue.name)
            continue
        for state in FINISHED:
            policy = policy_for(policies, queue.name, state)
            if policy is None:
                continue
            cutoff = now - timedelta(days=policy.max_age_days)
            count = finished_before(queue, state, cutoff).count()
            if count:
                plan.due.append(Due(queue, state, cutoff, policy.max_age_days, count))
    return plan


# -- the run --------------------------------------------------------------------------


@dataclass
class Deleted:
    """What a run deleted (or, dry, would delete) of one queue and state."""

    queue: str
    state: str
    count: int
    cutoff: datetime
    max_age_days: int


@dataclass(frozen=True)
class AuditRetired:
    """Audit events sealed before ``cutoff`` retired (or, dry, that would be)."""

    count: int
    cutoff: datetime


@dataclass
class RetentionReport:
    dry_run: bool
    #: Waiting jobs expired past their ttl (None: a dry run expires nothing).
    expired: int | None = None
    deleted: list[Deleted] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    #: None when there is no audit policy.
    audit: AuditRetired | None = None

    @property
    def total(self) -> int:
        return sum(item.count for item in self.deleted)


def retention_run(
    *,
    actor: Actor,
    now: datetime | None = None,
    batch_size: int = 1000,
    dry_run: bool = False,
    report: RetentionReport | None = None,
    rest: float | None = None,
) -> RetentionReport:
    """Apply the retention policies as ``actor``: expire waiting jobs past their ttl,
    delete the finished jobs the policies make due in batches of ``batch_size`` (each
    batch its own transaction and ``clean`` event), then seal the audit trail and retire
    the events past the audit policy. ``dry_run`` changes nothing and reports what
    would go. Pass a ``report`` to keep what was done if the run fails part way
    (each step is added to it as it ends; the batches before a failure stay done).
    ``rest``: how many times a batch's time to wait before the next batch (default
    ``RETENTION_REST``; 0: none)."""
    if not 1 <= batch_size <= limits.MAX_CLEAN_LIMIT:
        raise ValueError(f"batch_size must be 1 to {limits.MAX_CLEAN_LIMIT}")
    rest = settings.RETENTION_REST if rest is None else rest
    if not 0 <= rest <= MAX_REST:
        raise ValueError(f"rest must be 0 to {MAX_REST:g}")
    now = now or timezone.now()
    report = report if report is not None else RetentionReport(dry_run=dry_run)
    report.dry_run = dry_run
    if not dry_run:
        report.expired = _expire_ttl(actor)
    plan = retention_plan(now=now)
    report.held = plan.held
    pacer = _Pacer(rest, rest_budget())
    for due in plan.due:
        deleted = Deleted(due.queue.name, due.state, 0, due.cutoff, due.max_age_days)
        report.deleted.append(deleted)
        if dry_run:
            deleted.count = due.count
        else:
            _delete_due(due, batch_size, actor, deleted, pacer)
    report.audit = _retire_audit(now, actor, dry_run=dry_run)
    return report


def _expire_ttl(actor: Actor) -> int:
    """Waiting jobs past their ttl become expired, batch by batch."""
    expired = 0
    while batch := jobs_expire_ttl(actor=actor):
        expired += batch
    return expired


def _delete_due(due: Due, batch_size: int, actor: Actor, deleted: Deleted, pacer: _Pacer) -> None:
    """Delete what ``due`` names, one ``jobs_clean`` (transaction and event) a batch,
    counting each committed batch in ``deleted`` as it ends, resting (``pacer``) after
    each batch but the last."""
    left = due.count
    while left > 0:
        started = _clock()
        cleaned = jobs_clean(
            queues=[due.queue],
            states=[due.state],
            finished_before_=due.cutoff,
            limit=min(batch_size, left),
            actor=actor,
            reason=f"retention policy: {due.max_age_days} days",
            events=False,
        )
        if not cleaned.total:
            break  # none left: deleted meanwhile, or locked by another run
        deleted.count += cleaned.total
        left -= cleaned.total
        if left > 0:
            pacer.after(_clock() - started)


def _retire_audit(now: datetime, actor: Actor, *, dry_run: bool) -> AuditRetired | None:
    """Seal what is pending, then retire the events sealed before the audit policy's
    cutoff (dry: count them)."""
    policy = RetentionPolicy.objects.filter(target=RetentionTarget.AUDIT).first()
    if policy is None:
        return None
    cutoff = now - timedelta(days=policy.max_age_days)
    if dry_run:
        return AuditRetired(AuditEvent.objects.filter(sealed_at__lt=cutoff).count(), cutoff)
    seal_all()
    return AuditRetired(audit_retire(cutoff=cutoff, actor=actor), cutoff)


# -- policy changes -------------------------------------------------------------------


def retention_policy_save(*, policy: RetentionPolicy, actor: Actor) -> RetentionPolicy:
    """Create or change a retention policy (validated), recorded with before/after."""
    with transaction.atomic():
        before = None
        if policy.pk is not None:
            old = RetentionPolicy.objects.select_for_update().get(pk=policy.pk)
            before = {
                "queue_pattern": old.queue_pattern,
                "target": old.target,
                "days": old.max_age_days,
            }
        policy.full_clean()
        policy.save()
        audit_record(
            actor=actor,
            action=Action.RETENTION_POLICY_SAVE,
            details={
                "policy_id": policy.pk,
                "from": before,
                "to": {
                    "queue_pattern": policy.queue_pattern,
                    "target": policy.target,
                    "days": policy.max_age_days,
                },
            },
        )
    return policy


def retention_policy_delete(*, policy_id: int, actor: Actor) -> None:
    with transaction.atomic():
        policy = RetentionPolicy.objects.select_for_update().get(pk=policy_id)
        details = {
            "policy_id": policy_id,
            "queue_pattern": policy.queue_pattern,
            "target": policy.target,
            "days": policy.max_age_days,
        }
        policy.delete()
        audit_record(actor=actor, action=Action.RETENTION_POLICY_DELETE, details=details)
