"""Issue 17: the audit guards do not take the app's word for how long events are kept
or when they were written.

- The retention age the DELETE and checkpoint guards enforce has a floor
  (AUDIT_MIN_RETENTION_DAYS, a constant in the trigger functions): lowering the audit
  policy row, which the app's own role may UPDATE, no longer makes young events
  deletable; the row itself may not go below the floor (a check constraint, the model,
  the service and the admin).
- An event INSERTed with a created_at more than an hour from the database's time (a
  backdated forgery) is refused."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from compliance.audit import chain, verification
from compliance.models import (
    AUDIT_MIN_RETENTION_DAYS,
    AuditCheckpoint,
    AuditEvent,
    RetentionPolicy,
    RetentionTarget,
)
from compliance.retention import retention_policy_save

from .personas import superuser_client
from .support import SETUP, postgres_only
from .test_audit_attacks import _insert, _refused
from .test_audit_chain import (  # noqa: F401 (_audit_policy: an autouse fixture)
    _audit_policy,
    _backdate,
    _bypassing_triggers,
    _events,
)

pytestmark = pytest.mark.django_db
CHECKPOINT = (
    "INSERT INTO compliance_auditcheckpoint "
    "(seq, hash, created_at, events_removed, reason, key_id, mac) "
    "VALUES (%s, %s, now(), 0, 'retention', 'chain1', %s)"
)
LOWER = "UPDATE compliance_retentionpolicy SET max_age_days = 1 WHERE target = 'audit'"


def _sealed_days_ago(days: int) -> AuditEvent:
    """Three events sealed ``days`` ago; the chain's head."""
    events = _events(3)
    chain.seal_all()
    _backdate(events, days)
    head = AuditEvent.objects.filter(seq__isnull=False).order_by("-seq").first()
    assert head is not None
    return head


def _policy_lowered_around_the_constraint() -> None:
    """What the reviewer did, on a database where the floor's check constraint is gone
    (only the owner can drop it): the guards' own floor must still hold."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "ALTER TABLE compliance_retentionpolicy DROP CONSTRAINT retention_audit_floor"
            )
            cursor.execute(LOWER)
            return
        cursor.execute("PRAGMA ignore_check_constraints = ON")
        try:
            cursor.execute(LOWER)
        finally:
            cursor.execute("PRAGMA ignore_check_constraints = OFF")


def _execute(sql: str, params: list[Any]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


# -- the floor ---------------------------------------------------------------------------


@postgres_only
def test_lowering_the_audit_policy_is_refused_by_the_database() -> None:
    assert "retention_audit_floor" in _refused(LOWER, [])
    assert "retention_audit_floor" in _refused(
        "INSERT INTO compliance_retentionpolicy (queue_pattern, target, max_age_days) "
        "VALUES ('x', 'audit', 7)",
        [],
    )


@postgres_only
def test_the_reviewer_s_repro_young_events_stay_whatever_the_policy_row_says() -> None:
    """Events sealed 2 days ago, the policy lowered to 1 day, a checkpoint at the head,
    then DELETE: on today's main the checkpoint and the delete both went through."""
    head = _sealed_days_ago(2)
    _policy_lowered_around_the_constraint()
    assert f"at least {AUDIT_MIN_RETENTION_DAYS} days old" in _refused(
        CHECKPOINT, [head.seq, head.hash, "a" * 64]
    )
    with _bypassing_triggers():  # even with a checkpoint there, as only an owner could
        chain.checkpoint_create(seq=head.seq or 0, hash=head.hash, events_removed=0, reason="x")
    assert "DELETE of event" in _refused("DELETE FROM compliance_auditevent", [])
    assert chain.retire_before(timezone.now(), reason="retention") == 0
    assert AuditEvent.objects.filter(seq__isnull=False).count() == head.seq


@postgres_only
def test_past_the_floor_a_lowered_policy_counts_from_the_floor() -> None:
    """Sealed 40 days ago, policy row 1 day: the effective age is the floor (30 days),
    so retention may retire them, as it could with a 30-day policy; 29 days may not."""
    young = _sealed_days_ago(AUDIT_MIN_RETENTION_DAYS - 1)
    _policy_lowered_around_the_constraint()
    assert f"at least {AUDIT_MIN_RETENTION_DAYS} days old" in _refused(
        CHECKPOINT, [young.seq, young.hash, "a" * 64]
    )
    assert chain.retire_before(timezone.now(), reason="retention") == 0
    _backdate(list(AuditEvent.objects.all()), 40)
    assert chain.retire_before(timezone.now(), reason="retention") == young.seq
    assert AuditCheckpoint.objects.get().seq == young.seq
    assert verification.verify().ok


def test_retention_never_retires_younger_than_the_floor_on_any_database() -> None:
    """The Python side holds the same floor (SQLite has no triggers)."""
    _sealed_days_ago(AUDIT_MIN_RETENTION_DAYS - 1)
    _policy_lowered_around_the_constraint()
    assert RetentionPolicy.objects.get(target=RetentionTarget.AUDIT).max_age_days == 1
    assert chain.retire_before(timezone.now(), reason="retention") == 0
    assert not AuditCheckpoint.objects.exists()


@pytest.mark.parametrize("days", [1, AUDIT_MIN_RETENTION_DAYS - 1])
def test_an_audit_policy_below_the_floor_is_refused_by_the_model_and_service(days: int) -> None:
    policy = RetentionPolicy.objects.get(target=RetentionTarget.AUDIT)
    policy.max_age_days = days
    with pytest.raises(ValidationError) as caught:
        retention_policy_save(policy=policy, actor=SETUP)
    assert caught.value.message_dict == {
        "max_age_days": [
            f"Audit events are kept at least {AUDIT_MIN_RETENTION_DAYS} days after sealing: "
            "the database refuses to delete younger ones whatever this policy says."
        ]
    }
    assert RetentionPolicy.objects.get(target=RetentionTarget.AUDIT).max_age_days == 90
    policy.max_age_days = AUDIT_MIN_RETENTION_DAYS
    retention_policy_save(policy=policy, actor=SETUP)  # the floor itself is fine
    jobs = RetentionPolicy(queue_pattern="billing:*", target="completed", max_age_days=days)
    retention_policy_save(policy=jobs, actor=SETUP)  # jobs have no floor


def test_the_admin_shows_the_floor_when_an_audit_policy_goes_below_it() -> None:
    policy = RetentionPolicy.objects.get(target=RetentionTarget.AUDIT)
    page = superuser_client().post(
        f"/admin/compliance/retentionpolicy/{policy.pk}/change/",
        {"queue_pattern": "*", "target": "audit", "max_age_days": "7"},
    )
    assert page.status_code == 200
    floor = f"Audit events are kept at least {AUDIT_MIN_RETENTION_DAYS} days"
    assert floor in page.content.decode()
    assert RetentionPolicy.objects.get(pk=policy.pk).max_age_days == 90


# -- backdated inserts -------------------------------------------------------------------


@postgres_only
@pytest.mark.parametrize(
    "created_at",
    ["now() - interval '2 hours'", "now() - interval '40 days'", "now() + interval '2 hours'"],
)
def test_a_backdated_or_post_dated_insert_is_refused(created_at: str) -> None:
    assert "is written when it happens" in _refused(_insert(created_at=created_at), [])
    assert not AuditEvent.objects.filter(actor="x").exists()


@postgres_only
def test_an_insert_within_the_hour_is_taken() -> None:
    """Clock skew between an app server and the database is tolerated."""
    for created_at in ("now()", "now() - interval '50 minutes'", "now() + interval '50 minutes'"):
        _execute(_insert(created_at=created_at), [])
    assert AuditEvent.objects.filter(actor="x").count() == 3


@postgres_only
def test_a_backdated_event_through_the_orm_is_refused_too() -> None:
    forged = AuditEvent(
        created_at=timezone.now() - timedelta(days=3), action="token.create", outcome="ok"
    )
    with pytest.raises(IntegrityError, match="is written when it happens"), transaction.atomic():
        forged.save(force_insert=True)


# -- the migration ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_migration_raises_a_policy_below_the_floor_on_the_record() -> None:
    before = [("compliance", "0011_audit_chain_keyed")]
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    old.get_model("compliance", "RetentionPolicy").objects.filter(target="audit").update(
        max_age_days=7
    )
    MigrationExecutor(connection).migrate(latest)
    assert RetentionPolicy.objects.get(target=RetentionTarget.AUDIT).max_age_days == 30
    event = AuditEvent.objects.get(action="retention.policySave")
    assert event.actor == "command:migrate"
    assert event.details["from"]["days"] == 7 and event.details["to"]["days"] == 30
