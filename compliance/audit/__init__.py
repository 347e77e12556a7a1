"""The audit record, floor 1: below everything that writes to it, above the kernel
alone. It imports nothing of security, queues or the rest of compliance: it takes plain
values (its retention policies name job states and queue patterns as plain strings).

- ``record``: actions, actors and the one writer of events (re-exported here);
- ``models``: the events and checkpoints (tables of the ``compliance`` app);
- ``chain``, ``chainkeys``: sealing into the keyed hash chain, verifying it, retiring;
- ``floods``: refusals of a throttled address, recorded 1st, 2nd, 4th, 8th, ...;
- ``actors``: who acts, read from a request or set for signal receivers;
- ``staff``: staff users as actors, and the base of every admin page that changes rows;
- ``selectors``, ``services``: reads of the trail, its export and its retirement."""

from __future__ import annotations

from .record import (
    Action,
    Actor,
    ActorKind,
    audit_event,
    audit_insert,
    audit_inserted,
    audit_record,
    audit_refusal,
    outcome_for_status,
    recorded,
)

__all__ = [
    "Action",
    "Actor",
    "ActorKind",
    "audit_event",
    "audit_insert",
    "audit_inserted",
    "audit_record",
    "audit_refusal",
    "outcome_for_status",
    "recorded",
]
