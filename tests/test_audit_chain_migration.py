"""Upgrading a trail sealed under plain SHA-256 (compliance migration 0011): a chain that
verifies is re-sealed under AUDIT_CHAIN_KEY, checkpoints included; a broken one stops the
migration, since re-keying it would launder the tampering."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from compliance.audit import verification
from compliance.models import AuditCheckpoint, AuditEvent

from .support import ON_POSTGRES

pytestmark = pytest.mark.django_db(transaction=True)
BEFORE = [("compliance", "0010_erasure_no_elsewhere")]
keyed = importlib.import_module("compliance.migrations.0011_audit_chain_keyed")


def _migrate(targets: list[tuple[str, str]]) -> Any:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture
def legacy() -> Iterator[Any]:
    """The database as of migration 0009; put back to the latest whatever happens."""
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()
    try:
        yield _migrate(BEFORE)
    finally:
        if ON_POSTGRES:  # whatever a failed test left: the flush empties the tables next
            with connection.cursor() as cursor:
                cursor.execute("SET session_replication_role = replica")
        try:
            _migrate(latest)
        except RuntimeError:
            with connection.cursor() as cursor:
                cursor.execute("DELETE FROM compliance_auditevent")
                cursor.execute("DELETE FROM compliance_auditcheckpoint")
            _migrate(latest)
        finally:
            if ON_POSTGRES:
                with connection.cursor() as cursor:
                    cursor.execute("SET session_replication_role = DEFAULT")


def _legacy_trail(apps: Any, count: int) -> list[Any]:
    """``count`` events sealed as the SHA-256 sealer did, 100 days ago."""
    event_model = apps.get_model("compliance", "AuditEvent")
    events = [
        event_model.objects.create(action="push", outcome="ok", actor="command:x", details={"n": n})
        for n in range(count)
    ]
    prev, sealed_at = keyed.GENESIS, timezone.now() - timedelta(days=100)
    for seq, event in enumerate(events, start=1):
        event.seq, event.prev_hash, event.sealed_at = seq, prev, sealed_at
        event.hash = prev = keyed._legacy_link(event, seq=seq, prev_hash=prev)
    event_model.objects.bulk_update(events, ["seq", "prev_hash", "hash", "sealed_at"])
    return events


def test_a_sha256_trail_is_verified_and_resealed_under_the_key(legacy: Any) -> None:
    events = _legacy_trail(legacy, 5)
    legacy.get_model("compliance", "AuditCheckpoint").objects.create(
        seq=2, hash=events[1].hash, events_removed=2
    )
    legacy.get_model("compliance", "AuditEvent").objects.filter(seq__lte=2).delete()
    _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
    verdict = verification.verify()
    assert verdict.ok and verdict.checked == 3 and verdict.first_seq == 3
    assert set(AuditEvent.objects.values_list("chain_key_id", flat=True)) == {"chain1"}
    assert AuditEvent.objects.get(seq=3).prev_hash == events[1].hash  # the checkpoint's
    assert AuditEvent.objects.get(seq=5).hash != events[4].hash
    point = AuditCheckpoint.objects.get()
    assert point.key_id == "chain1" and len(point.mac) == 64


def test_a_broken_sha256_trail_stops_the_migration(legacy: Any) -> None:
    events = _legacy_trail(legacy, 3)
    with connection.cursor() as cursor:
        if ON_POSTGRES:
            cursor.execute("SET session_replication_role = replica")
        cursor.execute(
            "UPDATE compliance_auditevent SET actor = 'token:other' WHERE id = %s", [events[1].pk]
        )
        if ON_POSTGRES:
            cursor.execute("SET session_replication_role = DEFAULT")
    with pytest.raises(RuntimeError, match=f"does not verify at event {events[1].pk}"):
        _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
    assert (
        legacy.get_model("compliance", "AuditEvent").objects.get(pk=events[2].pk).hash
        == events[2].hash
    )
