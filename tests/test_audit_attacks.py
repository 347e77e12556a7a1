"""Issue 17: the audit chain cannot be cut by anyone who can run SQL as the app.

Each test replays an attack. With the triggers on (PostgreSQL), the database refuses
it; with them off (what the tables' owner or a superuser can do), audit_verify names it,
because every link is an HMAC under AUDIT_CHAIN_KEY, which is not in the database."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from compliance.audit import Action, Actor, audit_record, chain, verification
from compliance.audit.chainkeys import GENESIS, canonical, chain_keys, checkpoint_mac
from compliance.audit.services import audit_retire
from compliance.models import AuditCheckpoint, AuditEvent, RetentionPolicy, RetentionTarget
from security.encryption import generate_key

from .personas import superuser_client
from .support import postgres_only
from .test_audit_chain import (  # noqa: F401 (_audit_policy: an autouse fixture)
    _audit_policy,
    _backdate,
    _bypassing_triggers,
    _events,
    _raw,
    _verify_fails,
)

pytestmark = pytest.mark.django_db
WHO = Actor.command("attack-test")
# The attack of issue 17, as reported: an unsealed event made to look sealed before
# the chain's start, then deleted.
HIDE = (
    "UPDATE compliance_auditevent SET seq = -1, prev_hash = 'x', hash = 'x', "
    "sealed_at = '2000-01-01' WHERE id = %s"
)


def _refused(sql: str, params: list[Any]) -> str:
    with (
        pytest.raises(IntegrityError) as caught,
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql, params)
    return str(caught.value)


def _backdoor_token_event() -> AuditEvent:
    with transaction.atomic():
        return audit_record(actor=WHO, action=Action.TOKEN_CREATE, details={"token": "backdoor"})


def _head_anchor() -> str:
    head = AuditEvent.objects.filter(seq__isnull=False).order_by("-seq").first()
    assert head is not None
    return f"{head.seq}:{head.hash}"


def _verify_with_head(head: str, match: str) -> str:
    with pytest.raises(CommandError, match=match) as caught:
        call_command("audit_verify", "--head", head, stdout=StringIO())
    return str(caught.value)


def _retired_once() -> None:
    """A checkpoint exists (retention ran once), as in the reported attack."""
    old = _events(2)
    _backdate(old, 100)  # written 100 days ago ...
    chain.seal_all()
    _backdate(old, 100)  # ... and sealed then
    assert audit_retire(cutoff=timezone.now() - timedelta(days=90), actor=WHO) == 2
    assert AuditCheckpoint.objects.count() == 1


# -- (a) the reported attack ------------------------------------------------------------


@postgres_only
def test_the_reported_attack_is_refused_by_the_database() -> None:
    _retired_once()
    _events(3)
    chain.seal_all()
    head = AuditEvent.objects.filter(seq__isnull=False).order_by("-seq").first()
    assert head is not None and head.seq is not None
    event = _backdoor_token_event()
    assert "only be sealed as the next link of the chain" in _refused(HIDE, [event.pk])
    assert "DELETE of event" in _refused(
        "DELETE FROM compliance_auditevent WHERE id = %s", [event.pk]
    )
    # Not even as a well-formed link: only the next seq, after the head's hash, now().
    for sql, params in [
        (
            "UPDATE compliance_auditevent SET seq = -1, prev_hash = %s, hash = %s, "
            "chain_key_id = 'chain1', sealed_at = now() WHERE id = %s",
            [GENESIS, "a" * 64, event.pk],
        ),
        (
            "UPDATE compliance_auditevent SET seq = %s, prev_hash = %s, hash = %s, "
            "chain_key_id = 'chain1', sealed_at = now() WHERE id = %s",
            [head.seq + 2, head.hash, "a" * 64, event.pk],
        ),
        (
            "UPDATE compliance_auditevent SET seq = %s, prev_hash = %s, hash = %s, "
            "chain_key_id = 'chain1', sealed_at = '2000-01-01' WHERE id = %s",
            [head.seq + 1, head.hash, "a" * 64, event.pk],
        ),
        (
            "UPDATE compliance_auditevent SET seq = %s, prev_hash = %s, hash = %s, "
            "chain_key_id = 'chain1', sealed_at = now() WHERE id = %s",
            [head.seq + 1, head.prev_hash, "a" * 64, event.pk],
        ),
    ]:
        assert "next link of the chain" in _refused(sql, params)
    chain.seal_all()
    assert AuditEvent.objects.get(pk=event.pk).seq == head.seq + 1
    assert verification.verify().ok


def test_the_same_attack_with_the_triggers_off_is_named_by_audit_verify() -> None:
    _retired_once()
    _events(3)
    chain.seal_all()
    anchor = _head_anchor()
    event = _backdoor_token_event()
    _raw(HIDE, [event.pk])
    assert f"event id {event.pk}" in _verify_fails("seq -1 is before the chain's start")
    assert f"event id {event.pk}" in _verify_with_head(anchor, "seq -1")
    # Sealed first, then deleted with the triggers off: the external anchor names it.
    event = _backdoor_token_event()
    chain.seal_all()
    anchor = _head_anchor()
    _raw("DELETE FROM compliance_auditevent WHERE seq = -1")
    _raw("DELETE FROM compliance_auditevent WHERE id = %s", [event.pk])
    _verify_with_head(anchor, "the newest events were deleted")


def test_an_anchor_at_or_below_the_checkpoint_or_not_found_fails() -> None:
    """Today's code said OK to an anchor it could not check."""
    _retired_once()
    _events(2)
    chain.seal_all()
    checkpoint = AuditCheckpoint.objects.get()
    message = _verify_with_head(f"{checkpoint.seq}:{checkpoint.hash}", "at or below the latest")
    assert f"seq {checkpoint.seq}" in message
    _verify_with_head(f"1:{'0' * 64}", "at or below the latest checkpoint")
    _verify_with_head(f"9:{'a' * 64}", "the chain ends at seq 5")
    with pytest.raises(CommandError, match="positive integer"):
        call_command("audit_verify", "--head", f"0:{'a' * 64}", stdout=StringIO())
    with pytest.raises(CommandError, match="64 hex"):
        call_command("audit_verify", "--head", f"3:{'z' * 64}", stdout=StringIO())
    out = StringIO()
    call_command("audit_verify", "--head", _head_anchor(), stdout=out)
    assert "OK: 3 sealed event(s) verified from seq 3, up to the anchor at seq 5." in out.getvalue()


_UNSEALED_ROW = {
    "created_at": "now()",
    "action": "'push'",
    "queue": "''",
    "job_ids": "'[]'",
    "actor": "'x'",
    "outcome": "'ok'",
    "request_id": "''",
    "client_request_id": "''",
    "details": "'{}'",
    "prev_hash": "''",
    "hash": "''",
    "chain_key_id": "''",
}


def _insert(**values: str) -> str:
    row = {**_UNSEALED_ROW, **values}
    return (
        f"INSERT INTO compliance_auditevent ({', '.join(row)}) "  # noqa: S608 (test literals)
        f"VALUES ({', '.join(row.values())})"
    )


@postgres_only
@pytest.mark.parametrize(
    "sealed",
    [
        {"seq": "7"},
        {"hash": "'x'"},
        {"prev_hash": "'x'"},
        {"chain_key_id": "'k'"},
        {"sealed_at": "now()"},
    ],
)
def test_an_event_cannot_be_inserted_already_sealed(sealed: dict[str, str]) -> None:
    assert "written unsealed" in _refused(_insert(**sealed), [])
    with connection.cursor() as cursor:
        cursor.execute(_insert(), [])  # the application's own inserts


# -- (b) a forged checkpoint -----------------------------------------------------------


@postgres_only
def test_a_forged_checkpoint_is_refused_then_named_with_the_triggers_off() -> None:
    events = _events(4)
    chain.seal_all()
    third = AuditEvent.objects.get(seq=3)
    insert = (
        "INSERT INTO compliance_auditcheckpoint "
        "(seq, hash, created_at, events_removed, reason, key_id, mac) "
        "VALUES (%s, %s, now(), 0, 'forged', 'chain1', %s)"
    )
    # The right event and hash, but young: it would make seq 1..3 deletable.
    assert "past the audit retention policy" in _refused(insert, [3, third.hash, "a" * 64])
    assert "past the audit retention policy" in _refused(insert, [3, "b" * 64, "a" * 64])
    with _bypassing_triggers():
        AuditCheckpoint.objects.create(seq=3, hash=third.hash, key_id="chain1", mac="a" * 64)
        _raw("DELETE FROM compliance_auditevent WHERE seq <= 3")
    message = _verify_fails("checkpoint at seq 3 does not verify")
    assert "forged" in message
    assert AuditEvent.objects.filter(pk=events[3].pk).exists()


def test_a_checkpoint_macd_under_another_key_or_chained_wrongly_is_named() -> None:
    _retired_once()
    point = AuditCheckpoint.objects.get()
    other = hmac.new(b"k" * 32, point.hash.encode(), hashlib.sha256).hexdigest()
    _raw("UPDATE compliance_auditcheckpoint SET mac = %s", [other])
    _verify_fails("checkpoint at seq 2 does not verify")
    _raw("UPDATE compliance_auditcheckpoint SET key_id = 'gone', mac = %s", [point.mac])
    _verify_fails("names an unknown key")


def test_the_admin_s_verification_page_names_a_forged_checkpoint() -> None:
    _retired_once()
    _raw("UPDATE compliance_auditcheckpoint SET reason = 'nothing to see'")
    page = superuser_client().get("/admin/compliance/auditevent/verify/").content.decode()
    assert "Chain BROKEN: the checkpoint at seq 2 does not verify" in page


# -- (c) deleting a sealed but young event ------------------------------------------------


@postgres_only
def test_deleting_a_sealed_young_event_is_refused_even_behind_a_checkpoint() -> None:
    _events(3)
    chain.seal_all()
    second = AuditEvent.objects.get(seq=2)
    with _bypassing_triggers():  # a checkpoint the guard would have refused
        chain.checkpoint_create(seq=2, hash=second.hash, events_removed=0, reason="x")
    assert "DELETE of event" in _refused(
        "DELETE FROM compliance_auditevent WHERE id = %s", [second.pk]
    )
    # Old enough by the default policy (90 days), but the policy says a year.
    _backdate([second], 100)
    RetentionPolicy.objects.filter(target=RetentionTarget.AUDIT).update(max_age_days=365)
    assert "DELETE of event" in _refused(
        "DELETE FROM compliance_auditevent WHERE id = %s", [second.pk]
    )
    RetentionPolicy.objects.filter(target=RetentionTarget.AUDIT).delete()  # kept forever
    assert "DELETE of event" in _refused(
        "DELETE FROM compliance_auditevent WHERE id = %s", [second.pk]
    )
    RetentionPolicy.objects.create(queue_pattern="*", target=RetentionTarget.AUDIT, max_age_days=90)
    third = AuditEvent.objects.get(seq=3)
    _backdate([third], 100)  # old, but not behind the checkpoint
    assert "DELETE of event" in _refused(
        "DELETE FROM compliance_auditevent WHERE id = %s", [third.pk]
    )
    with connection.cursor() as cursor:  # old and behind the checkpoint: retention's case
        cursor.execute("DELETE FROM compliance_auditevent WHERE id = %s", [second.pk])


def test_a_sealing_time_backdated_with_the_triggers_off_is_named_and_never_retired() -> None:
    """Backdating sealed_at would let retention retire a young event behind a genuine
    checkpoint; the links cover sealed_at, so the chain names it and retention stops."""
    events = _events(3)
    chain.seal_all()
    _raw(
        "UPDATE compliance_auditevent SET sealed_at = %s WHERE seq <= 2",
        [timezone.now() - timedelta(days=100)],
    )
    assert f"event id {events[0].pk}" in _verify_fails("seq 1: hash mismatch")
    with pytest.raises(chain.ChainBroken):
        audit_retire(cutoff=timezone.now() - timedelta(days=90), actor=WHO)
    assert AuditEvent.objects.filter(pk__in=[e.pk for e in events]).count() == 3


def test_retention_follows_the_audit_policy_not_just_its_cutoff() -> None:
    old = _events(2)
    chain.seal_all()
    _backdate(old, 100)
    RetentionPolicy.objects.filter(target=RetentionTarget.AUDIT).update(max_age_days=365)
    assert audit_retire(cutoff=timezone.now(), actor=WHO) == 0
    RetentionPolicy.objects.filter(target=RetentionTarget.AUDIT).delete()
    assert audit_retire(cutoff=timezone.now(), actor=WHO) == 0
    assert not AuditCheckpoint.objects.exists()
    assert AuditEvent.objects.filter(pk__in=[e.pk for e in old]).count() == 2


# -- (d) sealing with a wrong hash -----------------------------------------------------------


def test_sealing_with_a_wrong_hash_is_taken_by_the_database_but_named() -> None:
    """The database cannot check an HMAC without the key: the next seq, the head's hash
    and now() pass the trigger; audit_verify names the link."""
    _events(2)
    chain.seal_all()
    event = _backdoor_token_event()
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE compliance_auditevent SET seq = 3, prev_hash = %s, hash = %s, "
            "chain_key_id = 'chain1', sealed_at = %s WHERE id = %s",
            [AuditEvent.objects.get(seq=2).hash, "c" * 64, chain._database_now(), event.pk],
        )
    message = _verify_fails("seq 3: hash mismatch")
    assert f"event id {event.pk}" in message


# -- (e) a chain recomputed without the key ---------------------------------------------------


def _recompute(link: Any) -> None:
    """Rewrite every link with ``link(event, seq, prev, key_id)``, triggers off, after
    editing the backdoor's event: what a database owner without the key can do."""
    prev = GENESIS
    for event in AuditEvent.objects.filter(seq__isnull=False).order_by("seq"):
        assert event.seq is not None
        digest = link(event, event.seq, prev, event.chain_key_id)
        _raw(
            "UPDATE compliance_auditevent SET prev_hash = %s, hash = %s WHERE id = %s",
            [prev, digest, event.pk],
        )
        prev = digest


def test_a_chain_recomputed_as_plain_sha256_is_named() -> None:
    events = _events(3)
    chain.seal_all()
    anchor_free = verification.verify()
    assert anchor_free.ok
    _raw("UPDATE compliance_auditevent SET actor = 'token:nobody' WHERE id = %s", [events[0].pk])
    _recompute(
        lambda e, seq, prev, kid: hashlib.sha256(
            prev.encode() + canonical(e, seq=seq, prev_hash=prev, key_id=kid)
        ).hexdigest()
    )
    assert f"event id {events[0].pk}" in _verify_fails("seq 1: hash mismatch")


def test_a_chain_recomputed_under_another_key_is_named() -> None:
    events = _events(3)
    chain.seal_all()
    forger_key = generate_key().encode()
    _raw("UPDATE compliance_auditevent SET queue = 'elsewhere' WHERE id = %s", [events[1].pk])
    _recompute(
        lambda e, seq, prev, kid: hmac.new(
            forger_key,
            prev.encode() + canonical(e, seq=seq, prev_hash=prev, key_id=kid),
            hashlib.sha256,
        ).hexdigest()
    )
    assert f"event id {events[0].pk}" in _verify_fails("seq 1: hash mismatch")


def test_retention_refuses_a_prefix_recomputed_without_the_key() -> None:
    old = _events(2)
    chain.seal_all()
    _backdate(old, 100)
    _recompute(
        lambda e, seq, prev, kid: hashlib.sha256(
            prev.encode() + canonical(e, seq=seq, prev_hash=prev, key_id=kid)
        ).hexdigest()
    )
    with pytest.raises(chain.ChainBroken):
        audit_retire(cutoff=timezone.now() - timedelta(days=90), actor=WHO)
    assert not AuditCheckpoint.objects.exists()


def test_checkpoint_macs_chain_to_each_other() -> None:
    _retired_once()
    first = AuditCheckpoint.objects.get()
    assert first.key_id == chain_keys().current
    assert first.mac == checkpoint_mac(
        seq=first.seq,
        hash=first.hash,
        events_removed=first.events_removed,
        reason=first.reason,
        created_at=first.created_at,
        key_id=first.key_id,
        prev_mac=GENESIS,
    )
