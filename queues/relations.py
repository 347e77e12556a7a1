"""A job's relations as a staff user may see them: its parent (the job whose child it
is), its children, its dependencies (its ``depends_on``) and its dependents (the jobs
that depend on it), read from ``JobDependency`` (queues.dependents has the rule).

Each relation lists at most ``SHOWN`` of the related jobs the user may see, oldest
first, and says how many more there are; related jobs in queues the user may not see
are only counted, never named. ``jobs_related`` is the same selection for the job list's
filter (its "and N more" link)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum

from django.db.models import Count, Q, QuerySet

from .models import DependencyKind, Job, JobDependency

# The most related jobs a job's page lists per relation (a flow may hold 1,000).
SHOWN = 100
# The columns the relations block never reads (encrypted payloads).
_PAYLOADS = ("data", "result", "error", "errors")


class Relation(StrEnum):
    PARENT = "parent"
    CHILDREN = "children"
    DEPENDENCIES = "dependencies"
    DEPENDENTS = "dependents"


# Each relation: the dependency rows' kind, the column that holds the job we look
# from, and the column that holds the related job. A JobDependency row reads "job waits
# for depends_on": a parent waits for its child, a dependent for its dependency.
_ROWS: dict[Relation, tuple[str, str, str]] = {
    Relation.PARENT: (DependencyKind.CHILD, "depends_on", "job"),
    Relation.CHILDREN: (DependencyKind.CHILD, "job", "depends_on"),
    Relation.DEPENDENCIES: (DependencyKind.DEPENDENCY, "job", "depends_on"),
    Relation.DEPENDENTS: (DependencyKind.DEPENDENCY, "depends_on", "job"),
}


@dataclass(frozen=True)
class Related:
    """One relation of a job as one staff user sees it."""

    relation: Relation
    jobs: list[Job]  # the first SHOWN the user may see, oldest first, payloads deferred
    more: int  # the user may see these too, beyond the ones listed
    hidden: int  # in queues the user may not see: counted, never named

    @property
    def total(self) -> int:
        return len(self.jobs) + self.more + self.hidden


def _rows(relation: Relation, job_id: uuid.UUID) -> QuerySet[JobDependency]:
    kind, side, _ = _ROWS[relation]
    return JobDependency.objects.filter(kind=kind, **{side: job_id})


def jobs_related(*, jobs: QuerySet[Job], relation: Relation, job_id: uuid.UUID) -> QuerySet[Job]:
    """Those of ``jobs`` related to the job ``job_id`` by ``relation``."""
    _, _, other = _ROWS[relation]
    return jobs.filter(id__in=_rows(relation, job_id).values(other))


def job_relations(*, job: Job, visible: QuerySet[Job]) -> list[Related]:
    """``job``'s relations that hold any job, as seen by a user who may see ``visible``.
    One statement counts all four (jobdep_job_target_uniq and jobdep_target_idx); a
    relation that holds jobs costs one more, and a count when it holds over SHOWN."""
    counts = JobDependency.objects.filter(Q(job=job.pk) | Q(depends_on=job.pk)).aggregate(
        **{
            str(relation): Count("id", filter=Q(kind=kind, **{side: job.pk}))
            for relation, (kind, side, _) in _ROWS.items()
        }
    )
    found = []
    for relation in Relation:
        total = int(counts[str(relation)] or 0)
        if not total:
            continue
        seen = jobs_related(jobs=visible, relation=relation, job_id=job.pk)
        listed = list(seen.defer(*_PAYLOADS).order_by("id")[: SHOWN + 1])
        count = len(listed) if len(listed) <= SHOWN else seen.count()
        found.append(
            Related(
                relation,
                listed[:SHOWN],
                more=count - SHOWN if count > SHOWN else 0,
                hidden=max(0, total - count),
            )
        )
    return found


def job_in_flow(*, job_id: uuid.UUID) -> bool:
    """Whether the job belongs to a flow: it has a parent or children (one statement,
    jobdep_job_target_uniq and jobdep_target_idx)."""
    return (
        JobDependency.objects.filter(kind=DependencyKind.CHILD)
        .filter(Q(job=job_id) | Q(depends_on=job_id))
        .exists()
    )
