"""Verifying the audit trail's keyed hash chain (compliance.audit.chain seals it).

``verify`` recomputes the checkpoints' and the events' MACs from the latest checkpoint
(or the start) and names the first event or checkpoint that was edited, deleted,
inserted, reordered or forged; with an anchor kept outside the database it also
catches the newest events deleted. ``verify_step`` does the same in bounded steps, for
the admin's page: no request walks a long trail."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from hmac import compare_digest
from typing import Any

from .chainkeys import GENESIS, UnknownChainKey, checkpoint_mac, link_hash
from .models import AuditCheckpoint, AuditEvent

_BATCH = 1000  # events read per query while verifying


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
        batch = list(AuditEvent.objects.filter(seq__gt=last).order_by("seq")[:_BATCH])
        if not batch:
            return
        yield from batch
        last = batch[-1].seq or last


def link_problem(event: AuditEvent, *, seq: int, prev: str) -> str:
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


def _start() -> tuple[int, str, str, AuditEvent | None]:
    """Where verification starts (the latest checkpoint's seq and hash, or 0 and the
    genesis) and what is wrong before the first link, if anything, with its event."""
    checkpoint = AuditCheckpoint.objects.order_by("-seq").first()
    start, prev = (checkpoint.seq, checkpoint.hash) if checkpoint else (0, GENESIS)
    if problem := _checkpoint_problem():
        return start, prev, problem, None
    early = AuditEvent.objects.filter(seq__lte=start).order_by("seq").first()
    if early is not None:
        where = "before the chain's start" if (early.seq or 0) < 1 else "behind the checkpoint"
        return start, prev, f"event at seq {early.seq} is {where}", early
    return start, prev, "", None


def _unsealed() -> dict[str, Any]:
    unsealed = AuditEvent.objects.filter(seq__isnull=True)
    oldest = unsealed.order_by("created_at").values_list("created_at", flat=True).first()
    return {"unsealed": unsealed.count(), "oldest_unsealed": oldest}


def verify(*, head: tuple[int, str] | None = None) -> Verdict:
    """Recompute the chain; the first event (or checkpoint) that breaks it, if any.
    ``head`` is an anchor kept outside the database (seq and hash of a sealed event,
    from the sealer's log line or anchor file): the chain must reach it and agree
    with it, and it must be newer than the latest checkpoint."""
    start, prev, problem, early = _start()
    expected, checked = start + 1, 0
    extra = _unsealed()

    def broken(problem: str, event: AuditEvent | None) -> Verdict:
        return Verdict(
            ok=False,
            checked=checked,
            first_seq=start + 1,
            problem=problem,
            event_id=event.pk if event else None,
            **extra,
        )

    if problem and early is None:
        return broken(problem, None)
    if head is not None and head[0] <= start:
        return broken(
            f"the anchor names seq {head[0]}, at or below the latest checkpoint (seq "
            f"{start}): it cannot vouch for the chain; take a newer anchor",
            None,
        )
    if problem:
        return broken(problem, early)
    for event in _sealed_in_order(start):
        if problem := link_problem(event, seq=expected, prev=prev):
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


#: Links one ``verify_step`` checks: a few hundred milliseconds on 2 cores.
VERIFY_STEP = 2000


def verify_step(*, after: int | None, limit: int | None = None) -> tuple[Verdict, int | None]:
    """``verify`` in steps of at most ``limit`` links, so that a page verifies a long
    chain over several short requests. ``after=None`` starts at the latest checkpoint
    (checking the checkpoints and what lies behind them first); ``after=seq`` goes on
    from the sealed event ``seq``, which the step before verified, so the steps taken
    in order check every link ``verify`` would. Returns the verdict of this step
    (``checked`` counts its own links, ``first_seq`` is the chain's start) and the seq
    to go on after, or None once the chain's end (or a break) is reached."""
    limit = limit or VERIFY_STEP
    start, prev, problem, early = _start()
    checked = 0

    def broken(problem: str, event: AuditEvent | None) -> tuple[Verdict, None]:
        verdict = Verdict(
            ok=False,
            checked=checked,
            first_seq=start + 1,
            problem=problem,
            event_id=event.pk if event else None,
            **_unsealed(),
        )
        return verdict, None

    if problem:
        return broken(problem, early)
    if after is not None:
        if after < start:
            return broken(f"seq {after} is behind the latest checkpoint (seq {start})", None)
        if after > start:
            before = AuditEvent.objects.filter(seq=after).only("hash").first()
            if before is None:
                return broken(f"seq {after} is missing: an event was deleted", None)
            prev = before.hash
        start_at = after
    else:
        start_at = start
    expected = start_at + 1
    events = list(AuditEvent.objects.filter(seq__gt=start_at).order_by("seq")[: limit + 1])
    for event in events[:limit]:
        if problem := link_problem(event, seq=expected, prev=prev):
            return broken(problem, event)
        prev, expected, checked = event.hash, expected + 1, checked + 1
    more = len(events) > limit
    if more:
        return Verdict(ok=True, checked=checked, first_seq=start + 1), expected - 1
    return Verdict(ok=True, checked=checked, first_seq=start + 1, **_unsealed()), None
