"""Cancelling a whole flow: from any job in it, up the child edges to the root, then the
root and every unfinished job under it (the admin's "Cancel flow")."""

from __future__ import annotations

import uuid

from django.db import transaction
from django.utils import timezone

from compliance.audit import Action, Actor, audit_record
from kernel import limits

from ..dependents import jobs_withdrawn, lock_below
from ..errors import StateConflict
from ..failures import cancellation
from ..models import UNFINISHED, DependencyKind, Job, JobDependency
from .common import deadlock_retried, job_get, reason_details


def flow_root(job_id: uuid.UUID) -> uuid.UUID:
    """The root of the flow ``job_id`` belongs to (itself when it is no one's child):
    a child has one parent, and a flow at most MAX_FLOW_DEPTH levels."""
    root = job_id
    for _ in range(limits.MAX_FLOW_DEPTH):
        # jobdep_target_idx: the parent of a child.
        parent = (
            JobDependency.objects.filter(depends_on_id=root, kind=DependencyKind.CHILD)
            .values_list("job_id", flat=True)
            .first()
        )
        if parent is None:
            break
        root = parent
    return root


@deadlock_retried
def flow_cancel(*, job_id: uuid.UUID, actor: Actor, reason: str = "") -> list[uuid.UUID]:
    """Cancel the flow ``job_id`` belongs to: its root, if unfinished, and every
    unfinished job under it, every level down (an active one's lease is void from then
    on); what waits for any of them outside the flow settles. One event lists them.
    Returns the ids cancelled; a flow with nothing unfinished is a conflict."""
    with transaction.atomic():
        job_get(job_id)  # JobNotFound
        root = flow_root(job_id)
        details = {"root": str(root), **reason_details(reason)}
        now = timezone.now()
        below = lock_below([root])  # children first, as acks lock them
        row = (
            Job.objects.select_for_update(of=("self",))
            .filter(id=root)
            .values_list("state", "watched", "queue__name")
            .first()
        )
        if row is None:  # deleted since
            raise StateConflict("The flow is gone.")
        state, watched, queue = row
        cancelled = []
        if state in UNFINISHED:
            Job.objects.filter(id=root).update(**cancellation(now))
            cancelled.append(root)
        watched_root = [root] if cancelled and watched else []
        settled = jobs_withdrawn([root], watched=watched_root, now=now, below=below)
        cancelled += settled.cancelled
        if not cancelled:
            raise StateConflict("Nothing in this flow is unfinished.")
        audit_record(
            actor=actor,
            action=Action.FLOW_CANCEL,
            queue=queue,
            job_ids=[*cancelled, *settled.ready, *settled.failed, *settled.expired],
            details={**details, "cancelled": len(cancelled), **settled.audit()},
        )
    return cancelled
