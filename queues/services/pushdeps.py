"""A push's depends_on: each id checked against what the caller may read, the targets
marked watched, and each new job's state and depth by the waiting rule (queues.services
.push calls this before the jobs go in)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime

from kernel.limits import MAX_WAIT_DEPTH
from kernel.problems import FieldError

from .. import selectors
from ..dependents import Target, Verdict, verdict, wait_depth, watch_targets
from ..errors import UnknownDependency, WaitTooDeep
from ..failures import record_failure
from ..jobspec import JobSpec
from ..models import UNFINISHED, DependencyKind, Job, JobDependency, JobState

DEPENDS_CHUNK = 1000
# States of a job depended on that do not fail the job depending on it.
DONE_OR_WAITING = (JobState.COMPLETED, *UNFINISHED)
# Whether the caller may read (getJob) jobs of the queue so named: the jobs its
# depends_on may name. None: any queue (a caller that is not a token).
Readable = Callable[[str], bool] | None


def _refuse_unknown(
    waiting: Sequence[tuple[Job, JobSpec]], known: Callable[[uuid.UUID], bool]
) -> None:
    """UnknownDependency naming each depends_on item that ``known`` refuses."""
    unknown = [
        FieldError(
            f"{_depends_on_path(spec)}/{index}",
            "names no job this token may read",
        )
        for _, spec in waiting
        for index, target in enumerate(spec.depends_on)
        if not known(target)
    ]
    if unknown:
        raise UnknownDependency(
            "depends_on names jobs that do not exist or that this token may not read.",
            errors=unknown,
        )


def _depends_on_path(spec: JobSpec) -> str:
    """``/depends_on``, or ``/jobs/5/depends_on`` for a batch's item."""
    return f"{spec.data_path.removesuffix('/data')}/depends_on"


def _refuse_too_deep(
    waiting: Sequence[tuple[Job, JobSpec]], targets: dict[uuid.UUID, Target]
) -> None:
    """Give each job its depth; WaitTooDeep naming each item past MAX_WAIT_DEPTH."""
    deep = []
    for job, spec in waiting:
        job.depth = wait_depth(targets[target] for target in spec.depends_on)
        if job.depth > MAX_WAIT_DEPTH:
            deep.append(
                FieldError(
                    _depends_on_path(spec),
                    f"jobs would wait on each other {job.depth} deep; at most {MAX_WAIT_DEPTH}",
                )
            )
    if deep:
        raise WaitTooDeep(
            f"depends_on would make jobs wait on each other more than {MAX_WAIT_DEPTH} deep "
            "(each job waiting for the next): let the jobs it names finish first.",
            errors=deep,
        )


def wait_for_dependencies(
    new: Sequence[tuple[Job, JobSpec]], now: datetime, readable: Readable
) -> list[JobDependency]:
    """New jobs pushed with ``depends_on``: each id must name a job the caller may read
    (else UnknownDependency naming the item: unknown and unreadable alike). Marks the
    targets watched and gives each new job its state by the waiting rule: ``waiting``
    when all completed, ``failed`` with code dependency_failed at once when one failed,
    was cancelled or expired, ``waiting-children`` otherwise, and its depth (past
    MAX_WAIT_DEPTH: WaitTooDeep naming the item). Returns the rows to insert once the
    jobs are."""
    waiting = [(job, spec) for job, spec in new if spec.depends_on]
    if not waiting:
        return []
    targets = list(dict.fromkeys(target for _, spec in waiting for target in spec.depends_on))
    # A batch may name up to MAX_BATCH x MAX_DEPENDS_ON ids: looked up and marked in
    # chunks, within SQLite's limit on a statement's parameters.
    chunks = [targets[at : at + DEPENDS_CHUNK] for at in range(0, len(targets), DEPENDS_CHUNK)]
    queues: dict[uuid.UUID, str] = {}
    for chunk in chunks:
        queues.update(selectors.jobs_queue_names(job_ids=chunk))
    _refuse_unknown(
        waiting,
        lambda target: target in queues and (readable is None or readable(queues[target])),
    )
    found: dict[uuid.UUID, Target] = {}
    for chunk in chunks:
        found.update(watch_targets(chunk))
    # A target deleted since the lookup (the mark waited for its delete to commit) names
    # no job now: the same answer, rather than a row pointing at nothing.
    _refuse_unknown(waiting, lambda target: target in found)
    # The marks roll back with a refusal: the caller's transaction holds them.
    _refuse_too_deep(waiting, found)
    states = {target: found[target].state for target in targets}
    rows: list[JobDependency] = []
    for job, spec in waiting:
        outcome = verdict(
            ((DependencyKind.DEPENDENCY, states[target]) for target in spec.depends_on),
            job.on_child_failure,
        )
        if outcome.verdict == Verdict.WAIT:
            job.state = JobState.WAITING_CHILDREN
        elif outcome.verdict == Verdict.FAIL:
            # As settling fails a waiting job: code, text and history entry, no attempt.
            target = next(t for t in spec.depends_on if states[t] not in DONE_OR_WAITING)
            text = f"a job it depends on failed: {target} ({states[target]})"
            record_failure(job, text, now=now, retry=False, delay_ms=0, code=outcome.code)
        rows += [
            JobDependency(job_id=job.id, depends_on_id=target, kind=DependencyKind.DEPENDENCY)
            for target in spec.depends_on
        ]
    return rows
