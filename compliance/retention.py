"""Retention of finished jobs: which policy applies to a queue, what is due, and the
service that deletes it.

``jobs_clean`` is the one path for deleting finished jobs: one transaction, one audit
event with the counts per queue and state. ``retention_cleanup`` (a command, and the
daily schedule) calls it once per batch, so a failure between batches leaves every
batch either done and recorded or not started; ``POST /queues/{pattern}/clean`` calls
it once per request. Queues under legal hold are never touched, only reported."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from compliance.audit import Action, Actor, audit_record
from compliance.models import RetentionPolicy, RetentionTarget
from queues.models import Queue
from queues.services.clean import FINISHED, finished_before
from security.access import pattern_matches


def policy_for(
    policies: Iterable[RetentionPolicy], queue: str, target: str
) -> RetentionPolicy | None:
    """The most specific policy for ``target`` whose pattern matches ``queue``."""
    matching = [
        policy
        for policy in policies
        if policy.target == target and pattern_matches(policy.queue_pattern, queue)
    ]
    return max(matching, key=lambda policy: policy.specificity, default=None)


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
