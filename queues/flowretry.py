"""Retrying a job that waits for others (a flow's parent, a job with ``depends_on``):
its children that failed, were cancelled or expired are retried with it, every level
down, and the completed ones are kept, not run again. Each retried job goes back to
``waiting-children`` while anything it waits for is unfinished, else to ``waiting``. A
job whose dependency failed is not retried: it would only fail again at once (retry the
dependency first); nor is the rest of its flow. Nor is a child whose parent is already
ready or running (``parents_started``): the parent would run without it."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .dependents import Verdict, verdict
from .models import FAILED_FOR_GOOD, DependencyKind, Job, JobDependency, JobState


def retried_fields(now: datetime) -> dict[str, Any]:
    """What a retry sets, one job or a batch: waiting, ready now, fresh attempts."""
    return {
        "state": JobState.WAITING,
        "attempts": 0,
        "run_at": now,
        "finished_at": None,
        "expires_at": None,
    }


@dataclass
class FlowsRetried:
    """Retried: the roots and the children retried with them (``children``), by the
    state they went to. ``blocked``: each root left as it was, with the failed
    dependency (of it or of a job under it) that stops it."""

    waiting: list[uuid.UUID] = field(default_factory=list)
    waiting_children: list[uuid.UUID] = field(default_factory=list)
    children: list[uuid.UUID] = field(default_factory=list)
    blocked: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)
    queues: set[str] = field(default_factory=set)  # of the jobs made waiting


def flows_retry(roots: Iterable[uuid.UUID], *, now: datetime) -> FlowsRetried:
    """Retry ``roots`` (failed, cancelled or expired, locked by the caller) with their
    failed, cancelled or expired children, every level down, in the caller's
    transaction. The children are locked in id order. A key held by an unfinished job
    raises IntegrityError (job_key_unfinished_uniq), for the caller to turn into its
    conflict."""
    tree = _trees(list(roots))
    jobs = {
        job_id: (policy, queue)
        for job_id, policy, queue in Job.objects.select_for_update(of=("self",))
        .filter(id__in=list(tree), state__in=FAILED_FOR_GOOD)
        .order_by("id")
        .values_list("id", "on_child_failure", "queue__name")
    }
    edges: dict[uuid.UUID, list[tuple[uuid.UUID, str, str]]] = {}
    for job_id, target, kind, state in JobDependency.objects.filter(
        job_id__in=list(jobs)
    ).values_list("job_id", "depends_on_id", "kind", "depends_on__state"):
        # What is retried with it counts as unfinished.
        edges.setdefault(job_id, []).append(
            (target, kind, JobState.WAITING if target in jobs else state)
        )
    outcome = FlowsRetried()
    verdicts = {
        job_id: verdict(((kind, state) for _, kind, state in edges.get(job_id, [])), policy)
        for job_id, (policy, _) in jobs.items()
    }
    for job_id, found in verdicts.items():
        if found.verdict == Verdict.FAIL:
            outcome.blocked.setdefault(tree[job_id], _failed_dependency(edges[job_id]))
    for job_id, found in verdicts.items():
        if tree[job_id] in outcome.blocked:
            continue
        ready = found.verdict == Verdict.READY
        (outcome.waiting if ready else outcome.waiting_children).append(job_id)
        if ready:
            outcome.queues.add(jobs[job_id][1])
        if job_id != tree[job_id]:
            outcome.children.append(job_id)
    fields = retried_fields(now)
    Job.objects.filter(id__in=outcome.waiting).update(**fields)
    fields["state"] = JobState.WAITING_CHILDREN
    Job.objects.filter(id__in=outcome.waiting_children).update(**fields)
    return outcome


# A parent that no longer waits for its children but has not finished: ready or running.
STARTED = (JobState.WAITING, JobState.ACTIVE)


def parents_started(children: Iterable[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    """Of ``children`` (locked by the caller), each whose flow parent is ready or
    running, with that parent: retried, it would run beside or after a parent that no
    longer waits for it (its ``ignore`` or ``continue`` counted the failure), so it is
    not retried. The parents are locked, as settling locks them after a child: a parent
    a sibling's ack makes ready meanwhile is seen ready here, and one still waiting goes
    on waiting for the retried child."""
    pairs = list(
        JobDependency.objects.filter(
            depends_on_id__in=list(children), kind=DependencyKind.CHILD
        ).values_list("depends_on_id", "job_id")
    )
    if not pairs:
        return {}
    states = dict(
        Job.objects.select_for_update(of=("self",))
        .filter(id__in={parent for _, parent in pairs})
        .order_by("id")
        .values_list("id", "state")
    )
    return {child: parent for child, parent in pairs if states.get(parent) in STARTED}


def _trees(roots: list[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    """Each root and the children to retry with it (failed, cancelled or expired, through
    such children only: a completed child's own children stay too), mapped to its root."""
    tree = {root: root for root in roots}
    level = roots
    while level:
        below = JobDependency.objects.filter(
            job_id__in=level, kind=DependencyKind.CHILD, depends_on__state__in=FAILED_FOR_GOOD
        ).values_list("job_id", "depends_on_id")
        level = []
        for parent, child in below:
            if child not in tree:
                tree[child] = tree[parent]
                level.append(child)
    return tree


def _failed_dependency(edges: list[tuple[uuid.UUID, str, str]]) -> uuid.UUID:
    return next(target for target, _, state in edges if state in FAILED_FOR_GOOD)
