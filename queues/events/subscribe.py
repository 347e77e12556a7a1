"""Which queues an event stream of a token's pattern reaches: now, and once they exist.
(Its opening is recorded by ``queues.reads.events_stream_read``.)"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache

from security.access import Principal, Verb, pattern_matches

from ..models import Queue


@dataclass(frozen=True)
class Reach:
    """The queues a stream of ``pattern`` may send events of: those it matches where
    ``principal`` has ``getJobs``."""

    pattern: str
    principal: Principal

    def __call__(self, queue: str) -> bool:
        return pattern_matches(self.pattern, queue) and self.principal.allows(Verb.GET_JOBS, queue)

    def may_subscribe(self) -> bool:
        """A queue name needs ``getJobs`` on it (the queue may not exist yet); a pattern
        needs a rule allowing ``getJobs`` on some queue it could match, now or later."""
        if "*" not in self.pattern:
            return self.principal.allows(Verb.GET_JOBS, self.pattern)
        return any(
            rule.allow and Verb.GET_JOBS in rule.verbs and globs_overlap(rule.pattern, self.pattern)
            for rule in self.principal.rules
        )


@lru_cache(maxsize=1024)
def globs_overlap(first: str, second: str) -> bool:
    """Whether some queue name matches both patterns (``*``: any run of characters)."""

    @cache
    def meet(i: int, j: int) -> bool:
        a = first[i] if i < len(first) else None
        b = second[j] if j < len(second) else None
        if a is None and b is None:
            return True
        if a == "*" and (meet(i + 1, j) or (b is not None and meet(i, j + 1))):
            return True
        if b == "*" and (meet(i, j + 1) or (a is not None and meet(i + 1, j))):
            return True
        return a is not None and a == b and a != "*" and meet(i + 1, j + 1)

    return meet(0, 0)


def queue_names() -> list[str]:
    return list(Queue.objects.values_list("name", flat=True))
