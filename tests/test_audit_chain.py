"""The audit trail is tamper-evident: sealed into an HMAC-SHA256 chain under
AUDIT_CHAIN_KEY, append-only in the models and (PostgreSQL) in the database, verified by
audit_verify, which names the first event that was edited, deleted, inserted or
reordered, even by someone who went around the triggers as a superuser would. Retention
removes only a checkpointed prefix. The attacks of issue 17 are in test_audit_attacks.
"""

from __future__ import annotations

import csv
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from io import StringIO
from itertools import pairwise
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from compliance.audit import Action, Actor, audit_record, chain, verification
from compliance.audit.chainkeys import GENESIS, chain_keys, link_hash
from compliance.audit.services import audit_retire
from compliance.models import (
    AppendOnly,
    AuditCheckpoint,
    AuditEvent,
    RetentionPolicy,
    RetentionTarget,
)

from .support import ON_POSTGRES, Api, make_token, postgres_only, push

pytestmark = pytest.mark.django_db
WHO = Actor.command("chain-test")


@pytest.fixture(autouse=True)
def _audit_policy() -> None:
    """The default audit policy (90 days after sealing), which the retention code and
    the PostgreSQL guard read, even after a transactional test emptied the tables."""
    RetentionPolicy.objects.update_or_create(
        queue_pattern="*", target=RetentionTarget.AUDIT, defaults={"max_age_days": 90}
    )


def _events(count: int, *, queue: str = "q") -> list[AuditEvent]:
    with transaction.atomic():
        return [
            audit_record(actor=WHO, action=Action.PUSH, queue=queue, details={"n": n})
            for n in range(count)
        ]


def _backdate(events: list[AuditEvent], days: int) -> None:
    """Test set-up only: unsealed events as if written ``days`` ago, sealed ones as if
    sealed then. Both times are covered by the links, so the chain is then linked again
    from its start, as only the key's holder can."""
    moment = timezone.now() - timedelta(days=days)
    ids = ",".join(str(e.pk) for e in events)
    _raw(
        "UPDATE compliance_auditevent SET "  # noqa: S608
        "created_at = CASE WHEN seq IS NULL THEN %s ELSE created_at END, "
        f"sealed_at = CASE WHEN seq IS NULL THEN NULL ELSE %s END WHERE id IN ({ids})",
        [moment, moment],
    )
    checkpoint = AuditCheckpoint.objects.order_by("-seq").first()
    prev = checkpoint.hash if checkpoint else GENESIS
    start = checkpoint.seq if checkpoint else 0
    for event in AuditEvent.objects.filter(seq__gt=start).order_by("seq"):
        assert event.seq is not None
        digest = link_hash(event, seq=event.seq, prev_hash=prev, key_id=event.chain_key_id)
        _raw(
            "UPDATE compliance_auditevent SET prev_hash = %s, hash = %s WHERE id = %s",
            [prev, digest, event.pk],
        )
        prev = digest


@contextmanager
def _bypassing_triggers() -> Iterator[None]:
    """What a database superuser can do: switch the triggers off (here for the block)."""
    if not ON_POSTGRES:
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL session_replication_role = DEFAULT")


def _raw(sql: str, params: list[Any] | None = None) -> None:
    with _bypassing_triggers(), connection.cursor() as cursor:
        cursor.execute(sql, params or [])


def _verify_fails(match: str) -> str:
    with pytest.raises(CommandError, match=match) as caught:
        call_command("audit_verify", stdout=StringIO())
    return str(caught.value)


# -- sealing and verifying -------------------------------------------------------------------


def test_events_are_written_unsealed_and_sealed_into_a_chain(api: Api) -> None:
    token = make_token("p", "jobs:*=push")
    push(api, token, queue="jobs:a")
    _events(3)
    assert AuditEvent.objects.filter(seq__isnull=True).count() == 5  # token.create too
    out = StringIO()
    call_command("audit_seal", stdout=out)
    assert "Sealed 5 audit event(s)." in out.getvalue()
    events = list(AuditEvent.objects.order_by("seq"))
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in pairwise(events))
    assert len({e.hash for e in events}) == 5
    _events(2)
    assert chain.seal_all() == 2  # continues the chain
    assert AuditEvent.objects.get(seq=6).prev_hash == events[-1].hash
    out = StringIO()
    call_command("audit_verify", stdout=out)
    assert "audit chain OK: 7 sealed event(s) verified from seq 1." in out.getvalue()


def test_verify_reports_unsealed_events_without_failing() -> None:
    _events(2)
    chain.seal_all()
    _events(1)
    out = StringIO()
    call_command("audit_verify", stdout=out)
    assert "1 event(s) not sealed yet" in out.getvalue() and "OK: 2" in out.getvalue()


def test_an_edited_event_is_named() -> None:
    events = _events(5)
    chain.seal_all()
    _raw("UPDATE compliance_auditevent SET details = %s WHERE id = %s", ['{"n": 99}', events[2].pk])
    message = _verify_fails("BROKEN")
    assert f"event id {events[2].pk}" in message and "altered" in message


def test_an_edited_actor_or_time_is_named_too() -> None:
    events = _events(3)
    chain.seal_all()
    _raw(
        "UPDATE compliance_auditevent SET actor = 'token:someone-else' WHERE id = %s",
        [events[0].pk],
    )
    assert f"event id {events[0].pk}" in _verify_fails("altered")


def test_a_deleted_event_is_named() -> None:
    events = _events(5)
    chain.seal_all()
    _raw("DELETE FROM compliance_auditevent WHERE id = %s", [events[2].pk])
    message = _verify_fails("seq 3 is missing")
    assert f"event id {events[3].pk}" in message


def test_a_deleted_last_event_and_renumbering_are_caught() -> None:
    """Deleting an event and renumbering the rest to close the gap breaks prev_hash."""
    events = _events(4)
    chain.seal_all()
    _raw("DELETE FROM compliance_auditevent WHERE id = %s", [events[1].pk])
    _raw("UPDATE compliance_auditevent SET seq = seq - 1 WHERE seq > 2")
    assert f"event id {events[2].pk}" in _verify_fails("prev_hash does not match")


def test_an_inserted_event_is_named() -> None:
    events = _events(4)
    chain.seal_all()
    _raw("UPDATE compliance_auditevent SET seq = seq + 100 WHERE seq >= 3")
    _raw("UPDATE compliance_auditevent SET seq = seq - 99 WHERE seq >= 103")
    forged = AuditEvent(
        created_at=events[1].created_at, action="push", outcome="ok", actor="token:forger"
    )
    forged.save()
    # Sealed-looking even to the key's holder: the right prev_hash and a valid link.
    prev, key_id = AuditEvent.objects.get(seq=2).hash, chain_keys().current
    _raw(
        "UPDATE compliance_auditevent SET seq = 3, prev_hash = %s, hash = %s, "
        "chain_key_id = %s WHERE id = %s",
        [prev, link_hash(forged, seq=3, prev_hash=prev, key_id=key_id), key_id, forged.pk],
    )
    message = _verify_fails("BROKEN")
    assert f"event id {events[2].pk}" in message  # the next real event no longer links


def test_reordered_events_are_named() -> None:
    events = _events(4)
    chain.seal_all()
    _raw("UPDATE compliance_auditevent SET seq = -1 WHERE id = %s", [events[1].pk])
    _raw("UPDATE compliance_auditevent SET seq = 2 WHERE id = %s", [events[2].pk])
    _raw("UPDATE compliance_auditevent SET seq = 3 WHERE id = %s", [events[1].pk])
    assert f"event id {events[2].pk}" in _verify_fails("BROKEN")


# -- append-only --------------------------------------------------------------------------


def test_the_models_refuse_changes_and_deletes() -> None:
    [event] = _events(1)
    event.action = "forged"
    with pytest.raises(AppendOnly):
        event.save()
    with pytest.raises(AppendOnly):
        event.delete()
    with pytest.raises(AppendOnly):
        AuditEvent.objects.filter(pk=event.pk).update(action="forged")
    with pytest.raises(AppendOnly):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.get(pk=event.pk).action == "push"


def _refused(sql: str, params: list[Any] | None = None) -> None:
    with (
        pytest.raises(DatabaseError, match=r"append-only|cannot be truncated|checkpoint"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql, params or [])


@postgres_only
def test_the_database_refuses_updates_deletes_and_truncate() -> None:
    events = _events(3)
    _refused("UPDATE compliance_auditevent SET action = 'x' WHERE id = %s", [events[0].pk])
    _refused("DELETE FROM compliance_auditevent WHERE id = %s", [events[0].pk])  # unsealed
    chain.seal_all()
    _refused("UPDATE compliance_auditevent SET seq = 99 WHERE id = %s", [events[0].pk])
    _refused("UPDATE compliance_auditevent SET hash = 'x' WHERE id = %s", [events[0].pk])
    _refused("DELETE FROM compliance_auditevent WHERE id = %s", [events[0].pk])  # no checkpoint
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL flashq.allow_audit_truncate = off")
    _refused("TRUNCATE compliance_auditevent")
    _refused(  # a forged checkpoint: no sealed event has this hash
        "INSERT INTO compliance_auditcheckpoint (seq, hash, created_at, events_removed, reason)"
        " VALUES (2, 'forged', now(), 0, '')"
    )
    _refused(  # a real event and hash, but sealed too recently to be retired
        "INSERT INTO compliance_auditcheckpoint (seq, hash, created_at, events_removed, reason)"
        " VALUES (2, %s, now(), 0, '')",
        [AuditEvent.objects.get(seq=2).hash],
    )
    _backdate(events[:2], 100)
    chain.checkpoint_create(
        seq=2, hash=AuditEvent.objects.get(seq=2).hash, events_removed=0, reason="test"
    )
    _refused(  # checkpoints only move forward
        "INSERT INTO compliance_auditcheckpoint (seq, hash, created_at, events_removed, reason)"
        " VALUES (1, %s, now(), 0, '')",
        [AuditEvent.objects.get(seq=1).hash],
    )
    _refused("UPDATE compliance_auditcheckpoint SET seq = 5")
    _refused("DELETE FROM compliance_auditcheckpoint")
    _refused("TRUNCATE compliance_auditcheckpoint")
    assert AuditEvent.objects.count() == 3


@postgres_only
def test_the_database_lets_the_sealer_set_the_chain_columns_once() -> None:
    [event] = _events(1)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE compliance_auditevent SET seq = 1, prev_hash = %s, hash = %s, "
            "chain_key_id = 'k', sealed_at = now() WHERE id = %s",
            [GENESIS, "a" * 64, event.pk],
        )
    _refused("UPDATE compliance_auditevent SET seq = NULL WHERE id = %s", [event.pk])


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_sealers_build_one_chain() -> None:
    _events(300)
    errors: list[BaseException] = []

    def seal() -> None:
        try:
            for _ in range(20):
                chain.seal_pending(limit=7)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=seal) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    chain.seal_all()
    seqs = AuditEvent.objects.order_by("seq").values_list("seq", flat=True)
    assert list(seqs) == list(range(1, 301))
    assert verification.verify().ok


# -- retention ----------------------------------------------------------------------------


def test_retention_removes_a_sealed_prefix_behind_a_checkpoint() -> None:
    old, recent = _events(4), _events(2)
    chain.seal_all()
    _backdate(old, 100)
    _backdate(recent, 10)
    unsealed_old = _events(1)  # not sealed yet: never removed
    _backdate(unsealed_old, 100)
    removed = audit_retire(cutoff=timezone.now() - timedelta(days=90), actor=WHO, limit=3)
    assert removed == 4
    points = AuditCheckpoint.objects.order_by("seq").values_list("seq", "events_removed")
    assert list(points) == [(3, 3), (4, 1)]  # batches of 3: a checkpoint each
    left = set(AuditEvent.objects.values_list("id", flat=True))
    assert not left & {e.pk for e in old}
    assert {e.pk for e in recent} | {unsealed_old[0].pk} <= left
    chain.seal_all()
    verdict = verification.verify()
    assert verdict.ok and verdict.first_seq == 5
    retire_event = AuditEvent.objects.get(action="audit.retire")
    assert retire_event.details["removed"] == 4


def test_tampering_after_retention_is_still_caught() -> None:
    old, kept = _events(3), _events(3)
    chain.seal_all()
    _backdate(old, 100)
    audit_retire(cutoff=timezone.now() - timedelta(days=90), actor=WHO)
    _raw("UPDATE compliance_auditevent SET queue = 'other' WHERE id = %s", [kept[1].pk])
    assert f"event id {kept[1].pk}" in _verify_fails("altered")


# -- export -------------------------------------------------------------------------------


def _export(fmt: str, **filters: Any) -> str:
    out = StringIO()
    since = (timezone.now() - timedelta(days=1)).isoformat()
    until = (timezone.now() + timedelta(days=1)).isoformat()
    args = ["--since", since, "--until", until, "--format", fmt]
    for name, value in filters.items():
        args += [f"--{name}", value]
    call_command("audit_export", *args, stdout=out)
    return out.getvalue()


def test_export_as_json_lines_with_filters_is_itself_audited() -> None:
    _events(2, queue="a")
    _events(3, queue="b")
    _backdate(_events(1, queue="a"), 5)  # outside the range
    chain.seal_all()
    lines = _export("jsonl", queue="a").splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["queue"] for r in records] == ["a", "a"]
    assert all(r["hash"] and r["seq"] for r in records)
    event = AuditEvent.objects.get(action="audit.export")
    assert event.actor == "command:audit_export" and event.queue == "a"
    assert event.details["count"] == 2 and event.details["format"] == "jsonl"


def test_export_as_csv_defuses_spreadsheet_formulas() -> None:
    """A caller's X-Request-ID may start with "-" (safe characters only): in the CSV a
    cell starting like a formula is prefixed with a quote."""
    with transaction.atomic():
        audit_record(actor=Actor(WHO.kind, WHO.name, client_request_id="-2+3"), action=Action.PUSH)
    [row] = list(csv.DictReader(StringIO(_export("csv"))))
    assert row["client_request_id"] == "'-2+3"
    assert json.loads(row["details"]) == {} and json.loads(row["job_ids"]) == []


def test_export_rejects_a_bad_range() -> None:
    with pytest.raises(CommandError, match="not an ISO date"):
        call_command("audit_export", "--since", "yesterday", "--until", "2026-12-01")
    with pytest.raises(CommandError, match="--until must be after --since"):
        call_command("audit_export", "--since", "2026-12-01", "--until", "2026-11-01")


def test_retention_refuses_to_checkpoint_a_broken_prefix() -> None:
    """Found in review: retiring a tampered prefix would have hidden the tampering."""
    old = _events(4)
    chain.seal_all()
    _backdate(old, 100)
    _raw("UPDATE compliance_auditevent SET details = %s WHERE id = %s", ['{"n": 7}', old[1].pk])
    with pytest.raises(chain.ChainBroken, match=f"event {old[1].pk}"):
        audit_retire(cutoff=timezone.now() - timedelta(days=90), actor=WHO)
    assert AuditEvent.objects.filter(pk__in=[e.pk for e in old]).count() == 4
    assert not AuditCheckpoint.objects.exists()


def test_an_anchor_catches_deleted_newest_events() -> None:
    """Found in review: deleting the newest events leaves a chain that verifies; the
    sealer's logged head (seq and hash) is the anchor that catches it."""
    events = _events(5)
    chain.seal_all()
    head = AuditEvent.objects.get(seq=5)
    call_command("audit_verify", "--head", f"5:{head.hash}", stdout=StringIO())
    _raw("DELETE FROM compliance_auditevent WHERE id = %s", [events[4].pk])
    assert verification.verify().ok  # without the anchor, a shorter chain is still a chain
    _verify_fails_with = pytest.raises(CommandError, match="the newest events were deleted")
    with _verify_fails_with:
        call_command("audit_verify", "--head", f"5:{head.hash}", stdout=StringIO())
    with pytest.raises(CommandError, match="does not match the anchor"):
        call_command("audit_verify", "--head", f"4:{'0' * 64}", stdout=StringIO())


def test_the_sealer_logs_its_head_as_an_anchor(
    caplog: pytest.LogCaptureFixture, django_capture_on_commit_callbacks: Any
) -> None:
    import logging

    log = logging.getLogger("flashq.audit")
    log.addHandler(caplog.handler)
    try:
        _events(2)
        with caplog.at_level(logging.INFO), django_capture_on_commit_callbacks(execute=True):
            chain.seal_all()
    finally:
        log.removeHandler(caplog.handler)
    head = AuditEvent.objects.get(seq=2)
    assert head.sealed_at is not None
    anchor = {
        "event": "audit.sealed",
        "seq": 2,
        "hash": head.hash,
        "key_id": "chain1",
        "time": head.sealed_at.isoformat(),
    }
    assert json.dumps(anchor) in caplog.text
