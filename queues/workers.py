"""Who is working, per queue: the token families that pulled in the last few minutes,
with the jobs they hold and their last pull (the admin's Workers page). Workers are
not registered anywhere: a worker is a token that pulls, so this reads what pulls leave
behind, the pull events of the audit trail and the leases on active jobs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Max, QuerySet

from compliance.audit import Action
from compliance.audit.models import AuditEvent
from security.models import ApiToken
from security.selectors import holder_names

from .models import Job, JobState, Queue

#: How far back a pull makes a worker current.
WORKERS_WINDOW = timedelta(minutes=15)


@dataclass(frozen=True)
class Worker:
    queue: str
    #: Who holds leases: ``Principal.key`` (``family:<id>``, ``token:<pk>``, ...).
    holder: str
    #: The holder as people know it: its token family's current name.
    name: str
    #: Active jobs whose lease it holds now.
    in_hand: int
    #: Its last pull in the window (a long poll counts when it returns); None when it
    #: holds jobs but has not pulled since the window began.
    last_pull: datetime | None


def _pull_holders(queue_names: list[str], since: datetime) -> dict[tuple[str, str], datetime]:
    """(queue, holder key) -> the last successful pull since ``since``. The events are
    read through audit_queue_time_idx (queue, created_at): the window's rows of these
    queues only, however long the trail."""
    pulls = (
        AuditEvent.objects.filter(
            queue__in=queue_names,
            created_at__gte=since,
            action=Action.PULL,
            outcome=AuditEvent.Outcome.OK,
        )
        .values("queue", "token_id", "actor")
        .annotate(last=Max("created_at"))
        .order_by()
    )
    rows = list(pulls)
    token_ids = {row["token_id"] for row in rows if row["token_id"] is not None}
    families = {
        pk: f"family:{family}" if family else f"token:{pk}"
        for pk, family in ApiToken.objects.filter(pk__in=token_ids).values_list("pk", "family")
    }
    last: dict[tuple[str, str], datetime] = {}
    for row in rows:
        actor = str(row["actor"])
        if row["token_id"] is not None:
            holder = families.get(row["token_id"], f"token:{row['token_id']}")
        elif actor.startswith("token:"):  # a bootstrap token (no row): its key's name
            holder = "bootstrap:" + actor.removeprefix("token:")
        else:
            holder = actor
        key = (str(row["queue"]), holder)
        last[key] = max(last.get(key, row["last"]), row["last"])
    return last


def workers_recent(*, queues: QuerySet[Queue], now: datetime) -> list[Worker]:
    """The workers of ``queues`` (those a staff user may view): each token family that
    pulled from one of them within WORKERS_WINDOW of ``now``, or holds one of its active
    jobs, by queue name then latest pull first. Four queries at most: the queues' names,
    their active jobs by holder (job_queue_state_idx), the window's pull events
    (audit_queue_time_idx) with their tokens' families, and the holders' names."""
    names = dict(queues.values_list("pk", "name"))
    last = _pull_holders(sorted(names.values()), now - WORKERS_WINDOW)
    held = (
        Job.objects.filter(queue_id__in=list(names), state=JobState.ACTIVE)
        .exclude(lease_owner="")
        .values("queue_id", "lease_owner")
        .annotate(jobs=Count("id"))
        .order_by()
    )
    in_hand = {(names[row["queue_id"]], str(row["lease_owner"])): int(row["jobs"]) for row in held}
    keys = set(last) | set(in_hand)
    people = holder_names(holder for _, holder in keys)
    workers = [
        Worker(
            queue=queue,
            holder=holder,
            name=people[holder],
            in_hand=in_hand.get((queue, holder), 0),
            last_pull=last.get((queue, holder)),
        )
        for queue, holder in keys
    ]
    never = datetime.min.replace(tzinfo=now.tzinfo)
    workers.sort(key=lambda w: (w.last_pull or never, w.name), reverse=True)
    workers.sort(key=lambda w: w.queue)
    return workers
