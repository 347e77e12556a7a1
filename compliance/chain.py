"""The audit trail's hash chain.

Events are written unsealed (``seq`` NULL) by whoever records them, so the API's hot
path never waits on a chain-wide lock. ``seal_pending`` (a scheduled task, and
``manage.py audit_seal``) then takes the events committed so far, in id order, and gives
each the next ``seq``, the previous event's hash and its own::

    hash = SHA-256(prev_hash || canonical JSON of the event, seq included)

Only one sealer runs at a time (a PostgreSQL advisory lock; SQLite's write lock).
``verify`` recomputes the chain from the latest checkpoint (or the start) and names the
first event that was edited, deleted, inserted or reordered. Retention
(``retire_before``) removes only sealed events, a prefix of the chain, after recording a
checkpoint with the last removed event's seq and hash, so what remains still verifies.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from .audit import recorded
from .models import AuditCheckpoint, AuditEvent

logger = logging.getLogger("flashq.audit")
GENESIS = "0" * 64


class ChainBroken(Exception):
    """Retention found the part it was to remove already broken: nothing is removed
    (a checkpoint must never vouch for events that do not verify)."""


SEAL_BATCH = 1000
# pg_advisory_xact_lock key: "flashq audit chain".
_CHAIN_LOCK = 0x666C61736871


def canonical(event: AuditEvent, *, seq: int, prev_hash: str) -> bytes:
    """The bytes the hash covers: every recorded field, in a fixed order and form."""
    created = event.created_at.astimezone(UTC) if event.created_at else None
    body = {
        "seq": seq,
        "prev_hash": prev_hash,
        "id": event.pk,
        "created_at": created.isoformat(timespec="microseconds") if created else None,
        **recorded(event),
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_hash(event: AuditEvent, *, seq: int, prev_hash: str) -> str:
    return hashlib.sha256(
        prev_hash.encode() + canonical(event, seq=seq, prev_hash=prev_hash)
    ).hexdigest()


def _lock_chain() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK])


def _head() -> tuple[int, str]:
    """The last sealed seq and its hash (or the latest checkpoint's, or the start)."""
    last = AuditEvent.objects.filter(seq__isnull=False).order_by("-seq").first()
    checkpoint = AuditCheckpoint.objects.order_by("-seq").first()
    if last is not None and last.seq is not None:
        return last.seq, last.hash
    if checkpoint is not None:
        return checkpoint.seq, checkpoint.hash
    return 0, GENESIS


def seal_pending(*, limit: int = SEAL_BATCH) -> int:
    """Seal up to ``limit`` committed, unsealed events; returns how many."""
    with transaction.atomic():
        _lock_chain()
        pending = list(AuditEvent.objects.filter(seq__isnull=True).order_by("id")[:limit])
        if not pending:
            return 0
        seq, prev = _head()
        now = timezone.now()
        for event in pending:
            seq += 1
            event.seq, event.prev_hash, event.sealed_at = seq, prev, now
            event.hash = prev = event_hash(event, seq=seq, prev_hash=event.prev_hash)
        AuditEvent.objects.bulk_update(pending, ["seq", "prev_hash", "hash", "sealed_at"])
        head = pending[-1]
        # An anchor outside the database: with it, audit_verify --head SEQ:HASH also
        # catches the newest events being deleted or the chain recomputed after them.
        transaction.on_commit(
            lambda: logger.info(
                json.dumps({"event": "audit.sealed", "seq": head.seq, "hash": head.hash})
            )
        )
    return len(pending)


def seal_all() -> int:
    total = 0
    while sealed := seal_pending():
        total += sealed
    return total


# -- verification ---------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    ok: bool
    checked: int
    first_seq: int  # where verification started (the checkpoint's seq + 1, or 1)
    problem: str = ""
    event_id: int | None = None
    unsealed: int = 0
    oldest_unsealed: datetime | None = None


def _sealed_in_order(after: int) -> Iterator[AuditEvent]:
    last = after
    while True:
        batch = list(AuditEvent.objects.filter(seq__gt=last).order_by("seq")[:SEAL_BATCH])
        if not batch:
            return
        yield from batch
        last = batch[-1].seq or last


def verify(*, head: tuple[int, str] | None = None) -> Verdict:
    """Recompute the chain; the first event that breaks it, if any. ``head`` is an
    anchor kept outside the database (seq and hash of a sealed event, from the sealer's
    log line): the chain must reach it and agree with it."""
    checkpoint = AuditCheckpoint.objects.order_by("-seq").first()
    start, prev = (checkpoint.seq, checkpoint.hash) if checkpoint else (0, GENESIS)
    expected, checked = start + 1, 0
    unsealed = AuditEvent.objects.filter(seq__isnull=True)
    oldest = unsealed.order_by("created_at").values_list("created_at", flat=True).first()
    extra: dict[str, Any] = {"unsealed": unsealed.count(), "oldest_unsealed": oldest}

    def broken(problem: str, event: AuditEvent | None) -> Verdict:
        return Verdict(
            ok=False,
            checked=checked,
            first_seq=start + 1,
            problem=problem,
            event_id=event.pk if event else None,
            **extra,
        )

    if AuditEvent.objects.filter(seq__lte=start).exists():
        early = AuditEvent.objects.filter(seq__lte=start).order_by("seq").first()
        return broken(f"event at seq {early.seq if early else '?'} is before the checkpoint", early)
    for event in _sealed_in_order(start):
        if event.seq != expected:
            return broken(
                f"seq {expected} is missing (next found: {event.seq}): an event was deleted",
                event,
            )
        if event.prev_hash != prev:
            return broken(
                f"seq {event.seq}: prev_hash does not match the event before it "
                "(deleted, inserted or reordered)",
                event,
            )
        if event_hash(event, seq=expected, prev_hash=prev) != event.hash:
            return broken(f"seq {event.seq}: hash mismatch, the event was altered", event)
        prev, expected, checked = event.hash, expected + 1, checked + 1
        if head is not None and event.seq == head[0] and event.hash != head[1]:
            return broken(f"seq {event.seq} does not match the anchor's hash", event)
    if head is not None and head[0] >= expected:
        return broken(
            f"the anchor names seq {head[0]} but the chain ends at seq {expected - 1}: "
            "the newest events were deleted",
            None,
        )
    return Verdict(ok=True, checked=checked, first_seq=start + 1, **extra)


# -- retention ------------------------------------------------------------------------


def _check_prefix(events: list[AuditEvent]) -> None:
    """The events about to be retired still verify from the latest checkpoint."""
    checkpoint = AuditCheckpoint.objects.order_by("-seq").first()
    seq, prev = (checkpoint.seq, checkpoint.hash) if checkpoint else (0, GENESIS)
    for event in events:
        seq += 1
        if (
            event.seq != seq
            or event.prev_hash != prev
            or event_hash(event, seq=seq, prev_hash=prev) != event.hash
        ):
            raise ChainBroken(
                f"the audit chain is broken at event {event.pk} (seq {event.seq}); "
                "run audit_verify: nothing was retired"
            )
        prev = event.hash


def retire_before(cutoff: datetime, *, reason: str, limit: int = SEAL_BATCH) -> int:
    """Remove up to ``limit`` events sealed before ``cutoff``, oldest first and
    only as an unbroken prefix of the chain, after recording a checkpoint at the last one
    removed. Returns how many were removed (0: nothing old enough)."""
    with transaction.atomic():
        _lock_chain()
        prefix = list(AuditEvent.objects.filter(seq__isnull=False).order_by("seq")[:limit])
        removable = []
        for event in prefix:
            if event.sealed_at is None or event.sealed_at >= cutoff:
                break
            removable.append(event)
        if not removable:
            return 0
        _check_prefix(removable)
        last = removable[-1]
        assert last.seq is not None
        AuditCheckpoint.objects.create(
            seq=last.seq, hash=last.hash, events_removed=len(removable), reason=reason[:200]
        )
        AuditEvent.objects.filter(seq__lte=last.seq)._retention_delete()
    return len(removable)
