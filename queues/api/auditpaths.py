"""Field paths fit for the audit trail. An error's JSON Pointer may run into keys the
client chose (``/data/patient/ssn:123-45-6789``, an unknown top-level field named after
a person): those must never reach the trail or the logs. A path is kept only as far as
it names the API's own fields and list positions, and is cut where client-chosen
content begins (so ``/jobs/3/data/x`` becomes ``/jobs/3/data``)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..jobspec import BACKOFF_FIELDS
from ..jobspec import FIELDS as PUSH_FIELDS

# Fields of the API's request bodies and query strings whose content is the API's own.
_STRUCTURED = (
    (PUSH_FIELDS - {"data"})
    | BACKOFF_FIELDS
    | {"jobs", "id", "lease_id", "error", "code", "retry", "progress", "message"}
    | {"count", "wait", "lease", "state", "limit", "cursor"}
    # A flow's tree (queues.flowspec): /children/2/children/0/job/data.
    | {"children", "job", "on_child_failure"}
    # Not in a body: the route's queue, and the request id header.
    | {"queue", "headers", "X-Request-ID"}
)
# Fields whose content the client chose: a path stops at them.
_PAYLOAD = frozenset({"data", "result"})
# Fields holding lists, whose positions are the API's own.
_LISTS = frozenset({"jobs", "tags", "depends_on", "children"})
MAX_PATHS = 20
# ASCII digits only (str.isdigit accepts any script's), at most the longest batch index.
_POSITION = re.compile(r"[0-9]{1,4}")


def audit_path(pointer: str) -> str:
    kept: list[str] = []
    for segment in pointer.split("/")[1:]:
        previous = kept[-1] if kept else ""
        if previous in _PAYLOAD:
            break
        if previous in _LISTS:
            if not _POSITION.fullmatch(segment):
                break
        elif segment not in _STRUCTURED and segment not in _PAYLOAD:
            break
        kept.append(segment)
    return "/" + "/".join(kept)


def audit_paths(pointers: Iterable[str]) -> list[str]:
    """Each path cut to the API's own fields, in order, without repeats, at most
    MAX_PATHS of them."""
    found: list[str] = []
    for pointer in pointers:
        path = audit_path(pointer)
        if path not in found:
            found.append(path)
        if len(found) == MAX_PATHS:
            break
    return found
