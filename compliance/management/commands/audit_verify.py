"""``manage.py audit_verify [--head SEQ:HASH | --anchor-file PATH]``: recompute the
audit trail's keyed hash chain and its checkpoints. Exits non-zero, naming the first
broken event or checkpoint, if any was edited, deleted, inserted, reordered or forged;
with an anchor kept outside the database, also if the newest events were cut off or
the anchor cannot vouch for the chain (at or below the latest checkpoint, not found)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from compliance.audit.verification import verify

HEX = frozenset("0123456789abcdef")


def _anchor(seq: object, digest: object, *, source: str) -> tuple[int, str]:
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise CommandError(f"{source}: the anchor's seq must be a positive integer")
    if not isinstance(digest, str) or len(digest) != 64 or not set(digest) <= HEX:
        raise CommandError(f"{source}: the anchor's hash must be 64 hex digits")
    return seq, digest


def _from_file(path: str) -> tuple[int, str]:
    try:
        lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise CommandError(f"--anchor-file: cannot read it ({exc.strerror})") from None
    if not lines:
        raise CommandError("--anchor-file: the file holds no anchor")
    try:
        last = json.loads(lines[-1])
    except ValueError:
        raise CommandError("--anchor-file: its last line is not JSON") from None
    if not isinstance(last, dict):
        raise CommandError("--anchor-file: its last line is not an anchor")
    return _anchor(last.get("seq"), last.get("hash"), source="--anchor-file")


class Command(BaseCommand):
    help = (
        "Verify the audit trail's keyed hash chain; non-zero exit on the first broken event "
        "or checkpoint, or when the chain does not reach an external anchor."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        anchors = parser.add_mutually_exclusive_group()
        anchors.add_argument(
            "--head",
            help="SEQ:HASH of a sealed event from the sealer's log (an anchor outside the "
            "database): also catches deleted newest events",
        )
        anchors.add_argument(
            "--anchor-file",
            help="a file the sealer appended its anchors to (audit_seal --anchor-file, "
            "AUDIT_ANCHOR_FILE): checks against its last line",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        head = None
        if options["head"]:
            seq, _, digest = options["head"].partition(":")
            if not seq.isdigit():
                raise CommandError("--head is SEQ:HASH, e.g. 1042:3f2a...(64 hex)")
            head = _anchor(int(seq), digest, source="--head")
        elif options["anchor_file"]:
            head = _from_file(options["anchor_file"])
        verdict = verify(head=head)
        if verdict.unsealed:
            self.stdout.write(
                f"{verdict.unsealed} event(s) not sealed yet (oldest "
                f"{verdict.oldest_unsealed.isoformat() if verdict.oldest_unsealed else '?'}); "
                "run audit_seal to include them."
            )
        if not verdict.ok:
            where = f"event id {verdict.event_id}" if verdict.event_id else "the end"
            raise CommandError(
                f"audit chain BROKEN at {where}: {verdict.problem} "
                f"({verdict.checked} event(s) verified before it)"
            )
        anchored = f", up to the anchor at seq {head[0]}" if head else ""
        self.stdout.write(
            f"audit chain OK: {verdict.checked} sealed event(s) verified from seq "
            f"{verdict.first_seq}{anchored}."
        )
