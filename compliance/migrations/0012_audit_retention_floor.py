# The audit trail's PostgreSQL guards no longer take the app's word for how long events
# are kept, nor for when they were written (issue 17):
# - a floor: an event is deletable, and a checkpoint may be made at it, only once it was
#   sealed at least FLOOR_DAYS ago, whatever the audit policy row says (the app's role
#   can UPDATE that row; lowering it to 1 day made young events deletable). The policy
#   row itself may not go below the floor either (a check constraint); rows below it
#   are raised to it, and that change is recorded as a retention.policySave event;
# - an INSERT whose created_at is more than an hour from the database's time is
#   refused (a backdated or post-dated forgery), in the same WHEN clause that refuses a
#   sealed INSERT, so the application's own inserts still run no trigger function.
# FLOOR_DAYS is compliance.models.AUDIT_MIN_RETENTION_DAYS, frozen here: changing it
# takes a new migration.

import importlib

from django.db import migrations, models

FLOOR_DAYS = 30
CLOCK_SKEW = "1 hour"

GUARDS_UP = f"""
CREATE OR REPLACE FUNCTION compliance_auditevent_guard() RETURNS trigger AS $$
DECLARE
    head_seq bigint;
    head_hash varchar;
    age integer;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF OLD.seq IS NOT NULL OR NEW.seq IS NULL
           OR (NEW.id, NEW.created_at, NEW.action, NEW.queue, NEW.job_ids, NEW.token_id,
               NEW.user_id, NEW.actor, NEW.client_ip, NEW.outcome, NEW.status,
               NEW.request_id, NEW.client_request_id, NEW.details)
              IS DISTINCT FROM
              (OLD.id, OLD.created_at, OLD.action, OLD.queue, OLD.job_ids, OLD.token_id,
               OLD.user_id, OLD.actor, OLD.client_ip, OLD.outcome, OLD.status,
               OLD.request_id, OLD.client_request_id, OLD.details) THEN
            RAISE EXCEPTION 'audit events are append-only: UPDATE of event % refused', OLD.id
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        -- The head: the newest sealed event (the unique index on seq, read backwards),
        -- else the latest checkpoint, else the start.
        SELECT e.seq, e.hash INTO head_seq, head_hash FROM compliance_auditevent e
            WHERE e.seq IS NOT NULL ORDER BY e.seq DESC LIMIT 1;
        IF head_seq IS NULL THEN
            SELECT c.seq, c.hash INTO head_seq, head_hash FROM compliance_auditcheckpoint c
                ORDER BY c.seq DESC LIMIT 1;
        END IF;
        IF head_seq IS NULL THEN
            head_seq := 0;
            head_hash := repeat('0', 64);
        END IF;
        IF NEW.seq <> head_seq + 1 OR NEW.prev_hash IS DISTINCT FROM head_hash
           OR NEW.sealed_at IS DISTINCT FROM now()
           OR NEW.hash !~ '^[0-9a-f]{{64}}$' OR NEW.chain_key_id = '' THEN
            RAISE EXCEPTION 'audit event % may only be sealed as the next link of the chain '
                '(seq %, its head''s hash, sealed_at now()): refused', OLD.id, head_seq + 1
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END IF;
    -- The policy's age, never below the floor; no policy row: never deleted.
    SELECT greatest(p.max_age_days, {FLOOR_DAYS}) INTO age FROM compliance_retentionpolicy p
        WHERE p.target = 'audit' AND p.queue_pattern = '*';
    IF OLD.seq >= 1 AND age IS NOT NULL
       AND OLD.sealed_at < now() - make_interval(days => age)
       AND OLD.seq <= (SELECT max(c.seq) FROM compliance_auditcheckpoint c) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit events are append-only: DELETE of event % refused (retention '
        'deletes only events behind a checkpoint, sealed more than the audit policy and '
        'at least {FLOOR_DAYS} days ago)', OLD.id
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION compliance_auditcheckpoint_insert_guard() RETURNS trigger AS $$
DECLARE
    age integer;
BEGIN
    IF EXISTS (SELECT 1 FROM compliance_auditcheckpoint c WHERE c.seq >= NEW.seq) THEN
        RAISE EXCEPTION 'audit checkpoints only move forward: seq % refused', NEW.seq
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    SELECT greatest(p.max_age_days, {FLOOR_DAYS}) INTO age FROM compliance_retentionpolicy p
        WHERE p.target = 'audit' AND p.queue_pattern = '*';
    IF age IS NULL OR NOT EXISTS (
        SELECT 1 FROM compliance_auditevent e
        WHERE e.seq = NEW.seq AND e.seq >= 1 AND e.hash = NEW.hash
          AND e.sealed_at < now() - make_interval(days => age)
    ) THEN
        RAISE EXCEPTION 'an audit checkpoint must name a sealed event, its hash, past the '
            'audit retention policy and at least {FLOOR_DAYS} days old: seq % refused', NEW.seq
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER compliance_auditevent_no_sealed_insert ON compliance_auditevent;
DROP FUNCTION compliance_auditevent_no_sealed_insert();

CREATE FUNCTION compliance_auditevent_insert_guard() RETURNS trigger AS $$
BEGIN
    IF NEW.seq IS NOT NULL OR NEW.sealed_at IS NOT NULL OR NEW.hash <> ''
       OR NEW.prev_hash <> '' OR NEW.chain_key_id <> '' THEN
        RAISE EXCEPTION 'audit events are written unsealed: a sealed INSERT is refused'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RAISE EXCEPTION 'an audit event is written when it happens: created_at % is more than '
        '{CLOCK_SKEW} from the database''s time %, refused', NEW.created_at,
        statement_timestamp()
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;

-- The WHEN clause is evaluated without calling the function: the application's own
-- inserts (unsealed, created_at taken just before the statement) run no trigger code.
-- statement_timestamp(), not now(): a long transaction does not age its own events.
CREATE TRIGGER compliance_auditevent_insert_guard
    BEFORE INSERT ON compliance_auditevent
    FOR EACH ROW
    WHEN (NEW.seq IS NOT NULL OR NEW.sealed_at IS NOT NULL OR NEW.hash <> ''
          OR NEW.prev_hash <> '' OR NEW.chain_key_id <> ''
          OR NEW.created_at < statement_timestamp() - interval '{CLOCK_SKEW}'
          OR NEW.created_at > statement_timestamp() + interval '{CLOCK_SKEW}')
    EXECUTE FUNCTION compliance_auditevent_insert_guard();
"""

# Back to migration 0011's functions and insert trigger.
GUARDS_DOWN = """
DROP TRIGGER compliance_auditevent_insert_guard ON compliance_auditevent;
DROP FUNCTION compliance_auditevent_insert_guard();
"""


def _keyed_guards():
    return importlib.import_module("compliance.migrations.0011_audit_chain_keyed").GUARDS_UP


def guards_up(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(GUARDS_UP, params=None)


def guards_down(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(GUARDS_DOWN, params=None)
        schema_editor.execute(_keyed_guards(), params=None)


def raise_to_floor(apps, schema_editor):
    """An audit policy below the floor is raised to it, on the record."""
    RetentionPolicy = apps.get_model("compliance", "RetentionPolicy")
    AuditEvent = apps.get_model("compliance", "AuditEvent")
    for policy in RetentionPolicy.objects.filter(target="audit", max_age_days__lt=FLOOR_DAYS):
        before = {
            "queue_pattern": policy.queue_pattern,
            "target": policy.target,
            "days": policy.max_age_days,
        }
        policy.max_age_days = FLOOR_DAYS
        policy.save(update_fields=["max_age_days"])
        AuditEvent.objects.create(
            action="retention.policySave",
            actor="command:migrate",
            outcome="ok",
            status=200,
            details={
                "policy_id": policy.pk,
                "from": before,
                "to": {**before, "days": FLOOR_DAYS},
                "reason": f"audit events are kept at least {FLOOR_DAYS} days",
            },
        )


class Migration(migrations.Migration):
    dependencies = [("compliance", "0011_audit_chain_keyed")]

    operations = [
        migrations.RunPython(raise_to_floor, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="retentionpolicy",
            constraint=models.CheckConstraint(
                condition=models.Q(("target", "audit"), _negated=True)
                | models.Q(("max_age_days__gte", FLOOR_DAYS)),
                name="retention_audit_floor",
                violation_error_message=(
                    f"Audit events are kept at least {FLOOR_DAYS} days after sealing."
                ),
            ),
        ),
        migrations.RunPython(guards_up, guards_down),
    ]
