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
``compliance.audit.verification`` does.

Only one sealer runs at a time (a PostgreSQL advisory lock; SQLite's write lock).
``verify`` (compliance.audit.verification) recomputes the checkpoints' and the
events' MACs from the latest checkpoint (or the start) and names the first event or
checkpoint that was edited, deleted, inserted, reordered or forged. Retention
(``retire_before``) removes only sealed events past the audit retention policy, a
prefix of the chain, after recording a keyed checkpoint with the last removed event's
seq and hash, so what remains still verifies.
After each batch the sealer logs its new head on ``flashq.audit`` and, with
AUDIT_ANCHOR_FILE (or ``audit_seal --anchor-file``), appends it to a file: anchors kept
outside the database, for ``audit_verify --head`` / ``--anchor-file``.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from .chainkeys import GENESIS, chain_keys, checkpoint_mac, link_hash
from .models import (
    AUDIT_MIN_RETENTION_DAYS,
    AuditCheckpoint,
    AuditEvent,
    RetentionPolicy,
    RetentionTarget,
)
from .verification import link_problem

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


# -- retention ------------------------------------------------------------------------


def _check_prefix(events: list[AuditEvent]) -> None:
    """The events about to be retired still verify from the latest checkpoint."""
    seq, prev = 0, GENESIS
    checkpoint = AuditCheckpoint.objects.order_by("-seq").first()
    if checkpoint is not None:
        seq, prev = checkpoint.seq, checkpoint.hash
    for event in events:
        seq += 1
        if link_problem(event, seq=seq, prev=prev):
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
