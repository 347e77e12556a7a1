"""Opening an event stream: which queues a token's pattern reaches, and the one audit
event of the call, written when the stream opens."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db import transaction

from compliance.audit import Action, Actor, audit_record
from kernel.limits import QUEUE_NAME_RE
from security.access import Principal, Verb, pattern_matches

from ..models import Queue
from .stream import StreamStart, stream_start


@dataclass(frozen=True)
class Reach:
    """The queues a stream of ``pattern`` may send events of: those it matches where
    ``principal`` has ``getJobs``."""

    pattern: str
    principal: Principal

    def __call__(self, queue: str) -> bool:
        return pattern_matches(self.pattern, queue) and self.principal.allows(Verb.GET_JOBS, queue)

    def may_subscribe(self, names: Iterable[str]) -> bool:
        """A queue name needs ``getJobs`` on it (the queue may not exist yet); a pattern
        needs it on a queue it matches, or on the pattern itself (a rule that covers
        every queue it could match)."""
        if self.principal.allows(Verb.GET_JOBS, self.pattern):
            return True
        return "*" in self.pattern and any(self(name) for name in names)


def queue_names() -> list[str]:
    return list(Queue.objects.values_list("name", flat=True))


def subscription_open(
    *, reach: Reach, names: list[str], last_event_id: str | None, actor: Actor
) -> StreamStart:
    """Where the stream starts (``stream_start``), recorded: the pattern, whether it
    resumed and from where, whether it starts with a reset, how many queues match."""
    with transaction.atomic():
        start = stream_start(last_event_id)
        details: dict[str, object] = {
            "pattern": reach.pattern,
            "resumed": start.resumed_from is not None and start.reset is None,
            "queues": sum(1 for name in names if reach(name)),
        }
        if start.resumed_from is not None:
            details["from"] = start.resumed_from
        if start.reset is not None:
            details["reset"] = start.reset
        queue = reach.pattern if QUEUE_NAME_RE.fullmatch(reach.pattern) else ""
        audit_record(actor=actor, action=Action.SUBSCRIBE_EVENTS, queue=queue, details=details)
    return start
