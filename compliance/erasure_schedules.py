"""The schedules an erasure deletes: those whose job template is about the subject (its
``subject`` says so, or the value at its queue's ``subject_path`` in the template data
does). A schedule is deleted, in either mode, never redacted: kept, it would go on
making jobs about the person. Queues under legal hold keep theirs (reported as held,
as for jobs); queues the caller may not erase are not read. The template data is
sealed, so it is opened schedule by schedule: schedules are configuration, a few per
queue, not a big table."""

from __future__ import annotations

from queues.jobspec import subject_from
from queues.models import Queue, Schedule

#: The key under which an erasure's counts (per queue) give the schedules it deletes;
#: the other keys are job states.
SCHEDULES = "schedules"


def _about(schedule: Schedule, queue: Queue, subject: str) -> bool:
    if schedule.subject == subject:
        return True
    return isinstance(schedule.data, dict) and (
        subject_from(schedule.data, queue.subject_path) == subject
    )


def schedules_to_erase(
    subject: str, queues: dict[int, Queue], *, lock: bool
) -> tuple[list[Schedule], list[str]]:
    """The subject's schedules in ``queues`` outside a legal hold (locked until the
    erasure commits when ``lock``), and the held queues that have some."""
    rows = Schedule.objects.filter(queue_id__in=list(queues)).order_by("id")
    found = [s for s in rows if _about(s, queues[s.queue_id], subject)]
    if lock and found:
        # Read again under the lock: a PUT may have replaced a template meanwhile.
        locked = rows.select_for_update().filter(id__in=[s.id for s in found])
        found = [s for s in locked if _about(s, queues[s.queue_id], subject)]
    held = sorted({queues[s.queue_id].name for s in found if queues[s.queue_id].legal_hold})
    return [s for s in found if not queues[s.queue_id].legal_hold], held


def schedules_count(
    counts: dict[str, dict[str, int]], schedules: list[Schedule], queues: dict[int, Queue]
) -> None:
    """Add each queue's schedules to an erasure's ``counts`` (queue -> key -> number)."""
    for schedule in schedules:
        per_queue = counts.setdefault(queues[schedule.queue_id].name, {})
        per_queue[SCHEDULES] = per_queue.get(SCHEDULES, 0) + 1


def schedules_delete(schedules: list[Schedule]) -> None:
    if schedules:
        Schedule.objects.filter(id__in=[s.id for s in schedules]).delete()
