"""Flows: a parent job and its tree of children, in queues of their own, pushed in one
transaction with one audit event (``flow.push``).

Every job passes the checks a push makes (size caps, the queue's schema, the card
guard; its data is sealed as it is written), and one refusal refuses the flow: nothing
is written, no queue created. Parents are written ``waiting-children`` (never handed
out) with their ``on_child_failure``; leaves ``waiting`` in their own queues, whose long
polls are woken. Each parent waits for each of its children by a JobDependency row
(kind ``child``), and every child is ``watched``, so whatever finishes it settles its
parent (queues.dependents).

Only the root may have a key. A root key held by an unfinished job of the root's queue
that the same token family pushed returns that job's tree (``created`` false): a retry
after a lost answer makes no second flow. Held by another family: KeyConflict."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from compliance.audit import Action, Actor, audit_event, audit_record
from kernel.problems import ServiceUnavailable

from .. import queuecache, wakeup
from ..bulkinsert import insert_jobs
from ..errors import KeyConflict
from ..flowspec import FlowNode
from ..models import UNFINISHED, DependencyKind, Job, JobDependency, JobState, Queue
from .common import (
    refuse_cards_in_data,
    refuse_cards_in_subjects,
    refuse_off_schema,
    refuse_oversize,
)
from .push import KEYED_PUSH_TRIES, _existing_queue, _new_job


@dataclass(frozen=True)
class FlowJob:
    """A job of a pushed flow, with its children in the order given."""

    job: Job
    queue: str
    children: tuple[FlowJob, ...] = ()

    def walk(self) -> list[FlowJob]:
        found = [self]
        for child in self.children:
            found += child.walk()
        return found


@dataclass(frozen=True)
class FlowPushed:
    root: FlowJob
    created: bool  # False: the root's key returned an existing flow


def flow_push(*, root: FlowNode, owner: str, actor: Actor) -> FlowPushed:
    """Push the flow ``root`` (its queue is the root job's) as ``owner``'s jobs, all or
    nothing. Queues are created on first push, in the same transaction."""
    if root.spec.key is None:
        try:
            with transaction.atomic():
                return _push_once(root, owner, actor)
        except IntegrityError:
            # A queue this process remembered was deleted since (queues.queuecache): its
            # jobs broke their foreign key. Once more with every queue looked up afresh.
            queuecache.forget_queues()
            with transaction.atomic():
                return _push_once(root, owner, actor)
    for _ in range(KEYED_PUSH_TRIES):
        try:
            with transaction.atomic():
                return _push_once(root, owner, actor)
        except IntegrityError:
            # A concurrent push took the root's key between lookup and insert; the next
            # look finds its job. (Or a remembered queue was deleted, as above.)
            queuecache.forget_queues()
            continue
    raise ServiceUnavailable("Concurrent pushes kept taking the same keys; retrying is safe.")


def _push_once(root: FlowNode, owner: str, actor: Actor) -> FlowPushed:
    if root.spec.key is not None:
        existing = (
            Job.objects.filter(queue__name=root.queue, key=root.spec.key, state__in=UNFINISHED)
            .only("id", "pushed_by")
            .first()
        )
        if existing is not None:
            if existing.pushed_by != owner:
                raise KeyConflict()
            tree = flow_tree(existing.id)
            ids = [node.job.id for node in tree.walk()]
            audit_record(
                actor=actor,
                action=Action.FLOW_PUSH,
                status=200,
                queue=root.queue,
                job_ids=ids,
                details={"count": len(ids), "created": False},
            )
            return FlowPushed(tree, created=False)
    now = timezone.now()
    queues, created = _queues(root.queues())
    _refuse(root, queues)
    tree, rows = _build(root, queues, now, owner)
    jobs = [node.job for node in tree.walk()]
    per_queue = Counter(node.queue for node in root.walk())
    event = audit_event(
        actor=actor,
        action=Action.FLOW_PUSH,
        status=201,
        queue=root.queue,
        job_ids=[job.id for job in jobs],
        details={
            "count": len(jobs),
            "created": True,
            "queues": dict(per_queue),
            **({"queues_created": created} if created else {}),
        },
    )
    insert_jobs(jobs, event=event, wake=None)
    JobDependency.objects.bulk_create(rows)
    ready = {job.queue_id for job in jobs if job.state == JobState.WAITING and job.run_at <= now}
    for name, queue in queues.items():
        if queue.pk in ready:
            wakeup.notify_ready(name)
    return FlowPushed(tree, created=True)


def _queues(names: list[str]) -> tuple[dict[str, Queue], list[str]]:
    """The flow's queues by name, those missing created (inside the flow's transaction,
    so a refused flow leaves none behind), and the names of those created."""
    queues: dict[str, Queue] = {}
    created: list[str] = []
    for name in names:
        queue = _existing_queue(name)
        if queue is None:
            queue, made = Queue.objects.get_or_create(name=name)
            if made:
                created.append(name)
        queues[name] = queue
    return queues, created


def _refuse(root: FlowNode, queues: dict[str, Queue]) -> None:
    """The push's guards, queue by queue, each over the whole tree before the next: a
    413 for any job before a 422 for any."""
    nodes: dict[str, list[FlowNode]] = {name: [] for name in queues}
    for node in root.walk():
        nodes[node.queue].append(node)
    for name, queue in queues.items():
        refuse_oversize([(n.spec.data_bytes, n.spec.data_path) for n in nodes[name]], queue)
    for name, queue in queues.items():
        refuse_off_schema([(n.spec.data, n.spec.data_path) for n in nodes[name]], queue)
    for name, queue in queues.items():
        refuse_cards_in_data(
            [(n.spec.card_findings, n.spec.data_path) for n in nodes[name]], queue.card_allowlist
        )
        refuse_cards_in_subjects(
            [(n.spec.data, n.spec.data_path) for n in nodes[name] if not n.spec.subject], queue
        )
    for name, queue in queues.items():
        if not queue.grouped and any(n.spec.group is not None for n in nodes[name]):
            # The queue's first grouped jobs: from now on its pulls use the grouped claim.
            Queue.objects.filter(pk=queue.pk, grouped=False).update(grouped=True)
            queuecache.forget_on_commit()
            queue.grouped = True


def _build(
    node: FlowNode, queues: dict[str, Queue], now: datetime, owner: str, *, watched: bool = False
) -> tuple[FlowJob, list[JobDependency]]:
    """The new jobs of ``node``'s subtree (each parent's depth 1 + its deepest
    child's) and the rows by which each parent waits for each of its children."""
    job = _new_job(queues[node.queue], node.spec, now, owner)
    job.watched = watched  # a child: its parent waits for it
    children: list[FlowJob] = []
    rows: list[JobDependency] = []
    for child in node.children:
        built, below = _build(child, queues, now, owner, watched=True)
        children.append(built)
        rows.append(
            JobDependency(job_id=job.id, depends_on_id=built.job.id, kind=DependencyKind.CHILD)
        )
        rows += below
    if children:
        job.state = JobState.WAITING_CHILDREN
        job.on_child_failure = node.on_child_failure
        # At most MAX_FLOW_DEPTH - 1 at the root, well within MAX_WAIT_DEPTH; a job
        # pushed with depends_on the root counts it.
        job.depth = 1 + max(child.job.depth for child in children)
    return FlowJob(job, node.queue, tuple(children)), rows


def flow_tree(root_id: uuid.UUID) -> FlowJob:
    """The flow under an existing job (its children, theirs, ...), in the order they
    were pushed: one query per level. Only what the tree shows is loaded (ids, queues,
    states and times), never a payload."""
    [root] = _jobs([root_id])
    children_of: dict[uuid.UUID, list[uuid.UUID]] = {}
    loaded = {root.id: root}
    level = [root.id]
    while level:
        edges = list(
            JobDependency.objects.filter(job_id__in=level, kind=DependencyKind.CHILD)
            .order_by("id")
            .values_list("job_id", "depends_on_id")
        )
        fresh = [child for _, child in edges if child not in loaded]
        loaded.update((job.id, job) for job in _jobs(fresh))
        for parent, child in edges:
            children_of.setdefault(parent, []).append(child)
        level = list(dict.fromkeys(fresh))

    def build(job_id: uuid.UUID) -> FlowJob:
        job = loaded[job_id]
        kids = tuple(build(kid) for kid in children_of.pop(job_id, ()) if kid in loaded)
        return FlowJob(job, job.queue.name, kids)

    return build(root.id)


def _jobs(ids: list[uuid.UUID]) -> list[Job]:
    if not ids:
        return []
    return list(
        Job.objects.filter(id__in=ids)
        .select_related("queue")
        .only("id", "state", "run_at", "expires_at", "queue__name")
    )
