"""The audit trail's keyed hash chain.

Events are written unsealed (``seq`` NULL) by whoever records them, so the API's hot
path never waits on a chain-wide lock. ``seal_pending`` (a scheduled task, and
``manage.py audit_seal``) then takes the events committed so far, in id order, and gives
each the next ``seq``, the previous event's hash, the current key id, the sealing time
and its own link, an HMAC-SHA256 under AUDIT_CHAIN_KEY over all of them and the event
(compliance.audit.chainkeys).

On PostgreSQL sealing is the database's own act (compliance migration 0011): a trigger
lets an event be updated only once, from unsealed to sealed, only as the next link
(``seq`` = the head's + 1, ``prev_hash`` = the head's hash, ``sealed_at`` = the
transaction's time) and with every recorded column unchanged. The sealer therefore
updates one row per statement, in seq order (a multi-row UPDATE visits rows in no
defined order). The database cannot check the HMAC itself (the key is not in it):
``verify`` does.

Only one sealer runs at a time (a PostgreSQL advisory lock; SQLite's write lock).
``verify`` recomputes the checkpoints' and the events' MACs from the latest checkpoint
(or the start) and names the first event or checkpoint that was edited, deleted,
inserted, reordered or forged. Retention (``retire_before``) removes only sealed events
past the audit retention policy, a prefix of the chain, after recording a keyed
checkpoint with the last removed event's seq and hash, so what remains still verifies.
After each batch the sealer logs its new head on ``flashq.audit`` and, with
AUDIT_ANCHOR_FILE (or ``audit_seal --anchor-file``), appends it to a file: anchors kept
outside the database, for ``audit_verify --head`` / ``--anchor-file``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from hmac import compare_digest
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from .chainkeys import GENESIS, UnknownChainKey, chain_keys, checkpoint_mac, link_hash
from .models import (
    AUDIT_MIN_RETENTION_DAYS,
    AuditCheckpoint,
    AuditEvent,
    RetentionPolicy,
    RetentionTarget,
)

logger = logging.getLogger("flashq.audit")


class ChainBroken(Exception):
    """Retention found the part it was to remove already broken: nothing is removed
    (a checkpoint must never vouch for events that do not verify)."""


SEAL_BATCH = 1000
# pg_advisory_xact_lock key: "flashq audit chain".
_CHAIN_LOCK = 0x666C61736871
_SEAL_SQL = (
    "UPDATE compliance_auditevent SET seq = %s, prev_hash = %s, hash = %s, "
    "chain_key_id = %s, sealed_at = %s WHERE id = %s AND seq IS NULL"
)


def _lock_chain() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK])


def _database_now() -> datetime:
    """The transaction's time as the database sees it (the triggers compare with it)."""
    if connection.vendor != "postgresql":
        return timezone.now()
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        [(now,)] = cursor.fetchall()
    return now  # type: ignore[no-any-return]


def _head() -> tuple[int, str]:
    """The last sealed seq and its hash (or the latest checkpoint's, or the start)."""
    # Both use the unique index on seq, read backwards.
    last = AuditEvent.objects.filter(seq__isnull=False).order_by("-seq").first()
    if last is not None and last.seq is not None:
        return last.seq, last.hash
    checkpoint = AuditCheckpoint.objects.order_by("-seq").first()
    if checkpoint is not None:
        return checkpoint.seq, checkpoint.hash
    return 0, GENESIS


def _append_anchor(path: str, line: str) -> None:
    with Path(path).open("a", encoding="utf-8") as out:
        out.write(line + "\n")


def seal_pending(*, limit: int = SEAL_BATCH, anchor_file: str = "") -> int:
    """Seal up to ``limit`` committed, unsealed events; returns how many. The new head
    is logged and, with ``anchor_file`` (default AUDIT_ANCHOR_FILE), appended to it."""
    key_id = chain_keys().current
    with transaction.atomic():
        _lock_chain()
        pending = list(AuditEvent.objects.filter(seq__isnull=True).order_by("id")[:limit])
        if not pending:
            return 0
        seq, prev = _head()
        sealed_at = _database_now()
        rows = []
        for event in pending:
            seq += 1
            event.sealed_at = sealed_at  # covered by the link
            event.hash = link_hash(event, seq=seq, prev_hash=prev, key_id=key_id)
            event.seq, event.prev_hash, event.chain_key_id = seq, prev, key_id
            rows.append((seq, prev, event.hash, key_id, sealed_at, event.pk))
            prev = event.hash
        # One row a statement, in seq order (pipelined by psycopg): the guard checks
        # each against the head the previous one made.
        with connection.cursor() as cursor:
            cursor.executemany(_SEAL_SQL, rows)
        head = pending[-1]
        anchor = json.dumps(
            {
                "event": "audit.sealed",
                "seq": head.seq,
                "hash": head.hash,
                "key_id": key_id,
                "time": sealed_at.isoformat(),
            }
        )
        path = anchor_file or settings.AUDIT_ANCHOR_FILE
        # Anchors outside the database: with one, audit_verify --head / --anchor-file
        # also catches the newest events being deleted.
        transaction.on_commit(lambda: logger.info(anchor))
        if path:
            transaction.on_commit(lambda: _append_anchor(path, anchor))
    return len(pending)


def seal_all(*, anchor_file: str = "") -> int:
    total = 0
    while sealed := seal_pending(anchor_file=anchor_file):
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


def _link_problem(event: AuditEvent, *, seq: int, prev: str) -> str:
    """Why ``event`` is not the link expected at ``seq`` after ``prev`` ('' if it is)."""
    if event.seq != seq:
        return f"seq {seq} is missing (next found: {event.seq}): an event was deleted"
    if event.prev_hash != prev:
        return (
            f"seq {seq}: prev_hash does not match the event before it "
            "(deleted, inserted or reordered)"
        )
    try:
        expected = link_hash(event, seq=seq, prev_hash=prev, key_id=event.chain_key_id)
    except UnknownChainKey as exc:
        return f"seq {seq}: sealed under an unknown key: {exc}"
    if not compare_digest(expected, event.hash):
        return f"seq {seq}: hash mismatch, the event was altered or sealed without the key"
    return ""


def _checkpoint_problem() -> str:
    """The checkpoints form a keyed chain of their own: '' if every one verifies."""
    prev_mac = GENESIS
    for point in AuditCheckpoint.objects.order_by("seq"):
        try:
            mac = checkpoint_mac(
                seq=point.seq,
                hash=point.hash,
                events_removed=point.events_removed,
                reason=point.reason,
                created_at=point.created_at,
                key_id=point.key_id,
                prev_mac=prev_mac,
            )
        except UnknownChainKey as exc:
            return f"the checkpoint at seq {point.seq} names an unknown key: {exc}"
        if not compare_digest(mac, point.mac):
            return (
                f"the checkpoint at seq {point.seq} does not verify: forged, altered, or "
                "one before it was removed"
            )
        prev_mac = point.mac
    return ""


def verify(*, head: tuple[int, str] | None = None) -> Verdict:
    """Recompute the chain; the first event (or checkpoint) that breaks it, if any.
    ``head`` is an anchor kept outside the database (seq and hash of a sealed event,
    from the sealer's log line or anchor file): the chain must reach it and agree
    with it, and it must be newer than the latest checkpoint."""
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

    if problem := _checkpoint_problem():
        return broken(problem, None)
    if head is not None and head[0] <= start:
        return broken(
            f"the anchor names seq {head[0]}, at or below the latest checkpoint (seq "
            f"{start}): it cannot vouch for the chain; take a newer anchor",
            None,
        )
    early = AuditEvent.objects.filter(seq__lte=start).order_by("seq").first()
    if early is not None:
        where = "before the chain's start" if (early.seq or 0) < 1 else "behind the checkpoint"
        return broken(f"event at seq {early.seq} is {where}", early)
    for event in _sealed_in_order(start):
        if problem := _link_problem(event, seq=expected, prev=prev):
            return broken(problem, event)
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
    seq, prev = 0, GENESIS
    checkpoint = AuditCheckpoint.objects.order_by("-seq").first()
    if checkpoint is not None:
        seq, prev = checkpoint.seq, checkpoint.hash
    for event in events:
        seq += 1
        if _link_problem(event, seq=seq, prev=prev):
            raise ChainBroken(
                f"the audit chain is broken at event {event.pk} (seq {event.seq}); "
                "run audit_verify: nothing was retired"
            )
        prev = event.hash


def checkpoint_create(*, seq: int, hash: str, events_removed: int, reason: str) -> AuditCheckpoint:
    """A checkpoint at a sealed event, MAC-chained to the previous checkpoint."""
    key_id = chain_keys().current
    previous = AuditCheckpoint.objects.order_by("-seq").first()
    point = AuditCheckpoint(
        seq=seq, hash=hash, events_removed=events_removed, reason=reason[:200], key_id=key_id
    )
    point.mac = checkpoint_mac(
        seq=seq,
        hash=hash,
        events_removed=events_removed,
        reason=point.reason,
        created_at=point.created_at,
        key_id=key_id,
        prev_mac=previous.mac if previous else GENESIS,
    )
    point.save(force_insert=True)
    return point


def retirement_cutoff(cutoff: datetime) -> datetime | None:
    """``cutoff``, but never later than the audit retention policy allows, nor than
    AUDIT_MIN_RETENTION_DAYS, by the database's clock (the trigger refuses deleting
    anything younger); None with no audit policy: then nothing is ever retired."""
    policy = RetentionPolicy.objects.filter(target=RetentionTarget.AUDIT, queue_pattern="*")
    days = policy.values_list("max_age_days", flat=True).first()
    if days is None:
        return None
    days = max(days, AUDIT_MIN_RETENTION_DAYS)
    return min(cutoff, _database_now() - timedelta(days=days))


def retire_before(cutoff: datetime, *, reason: str, limit: int = SEAL_BATCH) -> int:
    """Remove up to ``limit`` events sealed before ``cutoff`` (and past the audit
    retention policy), oldest first and only as an unbroken prefix of the chain, after
    recording a checkpoint at the last one removed. Returns how many were removed
    (0: nothing old enough)."""
    with transaction.atomic():
        _lock_chain()
        allowed = retirement_cutoff(cutoff)
        if allowed is None:
            return 0
        prefix = list(AuditEvent.objects.filter(seq__isnull=False).order_by("seq")[:limit])
        removable = []
        for event in prefix:
            if event.sealed_at is None or event.sealed_at >= allowed:
                break
            removable.append(event)
        if not removable:
            return 0
        _check_prefix(removable)
        last = removable[-1]
        assert last.seq is not None
        checkpoint_create(
            seq=last.seq, hash=last.hash, events_removed=len(removable), reason=reason
        )
        AuditEvent.objects.filter(seq__lte=last.seq)._retention_delete()
    return len(removable)
