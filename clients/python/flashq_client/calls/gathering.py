"""Producer mode's batch: the pushes gathered for one queue (``_gather``) sent as one
batch request, and each push's own answer or error read out of it.

The batch route is all or nothing, so one bad job would fail its neighbours; instead:

- a 400, 413 or 422 whose errors all name jobs (``/jobs/3/data/x``,
  ``/jobs/3/priority``): each named push gets its own error, its paths as a single
  push's (``/data/x``), and the others are sent again without it;
- a 409 ``key_conflict`` (which names no job) or a 413 for the body as a whole: the
  batch is split in two and each half sent again, down to the one push that is refused;
- anything else, after the usual retries (401, 403, 429, 5xx, no answer): every push
  of the batch gets it.

Sending again is safe: nothing of a refused batch was stored, and every push carries its
idempotency key, so a retry after a lost answer finds what the first attempt made.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from typing import Any, cast

from .._policy import Call, Plan
from ..errors import FieldProblem, FlashqError, with_errors
from ..shapes import PushedJob
from .base import CallsBase

#: An error path into one job of a batch: its index and the rest of the path.
_ITEM = re.compile(r"/jobs/(?P<index>0|[1-9][0-9]*)(?P<rest>/.*)?")

#: One push's outcome: its job (with ``created``) or its error.
Outcome = PushedJob | FlashqError


class GatheringCalls(CallsBase):
    def push_gathered(self, path: str, bodies: Sequence[dict[str, Any]]) -> Plan[list[Outcome]]:
        """Push ``bodies`` (keyed push bodies) to the queue at ``path`` (its
        ``queues/<name>/jobs``) in one batch request, or as few as its refusals allow.

        Returns:
            Each body's job or error, in order."""
        outcomes: list[Outcome | None] = [None] * len(bodies)
        groups = deque([list(range(len(bodies)))])
        while groups:
            group = groups.popleft()
            try:
                response = yield Call(
                    method="POST",
                    path=f"{path}/batch",
                    body={"jobs": [bodies[index] for index in group]},
                    idempotent=True,
                    catch=True,
                )
            except FlashqError as error:
                groups.extendleft(reversed(_after_refusal(error, group, outcomes)))
                continue
            jobs = cast(list[PushedJob], response.json()["jobs"])
            for index, job in zip(group, jobs, strict=True):
                outcomes[index] = job
        return cast(list[Outcome], outcomes)


def _after_refusal(
    error: FlashqError, group: list[int], outcomes: list[Outcome | None]
) -> list[list[int]]:
    """Settles the pushes of ``group`` that ``error`` is theirs; the groups to send again."""
    named = _named_items(error, len(group)) if error.status in (400, 413, 422) else None
    if named:
        for position, errors in named.items():
            outcomes[group[position]] = with_errors(error, errors)
        rest = [index for position, index in enumerate(group) if position not in named]
        return [rest] if rest else []
    if len(group) > 1 and (error.status == 413 or error.code == "key_conflict"):
        half = len(group) // 2
        return [group[:half], group[half:]]
    for index in group:
        outcomes[index] = error
    return []


def _named_items(error: FlashqError, size: int) -> dict[int, list[FieldProblem]] | None:
    """``error``'s field errors by the batch position they name, each path as a single
    push's; None unless every one names a job of the batch."""
    named: dict[int, list[FieldProblem]] = {}
    for problem in error.errors:
        match = _ITEM.fullmatch(problem["path"])
        if match is None or int(match["index"]) >= size:
            return None
        own: FieldProblem = {"path": match["rest"] or "", "message": problem["message"]}
        named.setdefault(int(match["index"]), []).append(own)
    return named or None
