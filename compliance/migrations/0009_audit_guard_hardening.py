# Hardening the audit trail's triggers (found in review):
# - a checkpoint may only be inserted at an existing sealed event, with that event's
#   hash, after the latest checkpoint (a forged checkpoint no longer opens the door to
#   deleting arbitrary events);
# - an event may only be deleted once sealed, covered by a checkpoint, and sealed more
#   than a day ago (recent events can never be deleted);
# - TRUNCATE needs both the session setting and a database named test_* (Django's test
#   databases): any role could set the setting, nobody renames a production database
#   from inside it.

from django.db import migrations

POSTGRESQL_UP = """
CREATE OR REPLACE FUNCTION compliance_auditevent_guard() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF OLD.seq IS NULL AND NEW.seq IS NOT NULL
           AND (NEW.id, NEW.created_at, NEW.action, NEW.queue, NEW.job_ids, NEW.token_id,
                NEW.user_id, NEW.actor, NEW.client_ip, NEW.outcome, NEW.status,
                NEW.request_id, NEW.client_request_id, NEW.details)
               IS NOT DISTINCT FROM
               (OLD.id, OLD.created_at, OLD.action, OLD.queue, OLD.job_ids, OLD.token_id,
                OLD.user_id, OLD.actor, OLD.client_ip, OLD.outcome, OLD.status,
                OLD.request_id, OLD.client_request_id, OLD.details) THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION 'audit events are append-only: UPDATE of event % refused', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.seq IS NOT NULL
       AND OLD.sealed_at < now() - interval '1 day'
       AND EXISTS (SELECT 1 FROM compliance_auditcheckpoint c WHERE c.seq >= OLD.seq) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit events are append-only: DELETE of event % refused', OLD.id
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION compliance_auditcheckpoint_insert_guard() RETURNS trigger AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM compliance_auditcheckpoint c WHERE c.seq >= NEW.seq) THEN
        RAISE EXCEPTION 'audit checkpoints only move forward: seq % refused', NEW.seq
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM compliance_auditevent e WHERE e.seq = NEW.seq AND e.hash = NEW.hash
    ) THEN
        RAISE EXCEPTION 'an audit checkpoint must name a sealed event and its hash: seq % refused',
            NEW.seq USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER compliance_auditcheckpoint_insert_guard
    BEFORE INSERT ON compliance_auditcheckpoint
    FOR EACH ROW EXECUTE FUNCTION compliance_auditcheckpoint_insert_guard();

CREATE OR REPLACE FUNCTION compliance_audit_no_truncate() RETURNS trigger AS $$
BEGIN
    IF coalesce(current_setting('flashq.allow_audit_truncate', true), '') = 'on'
       AND current_database() LIKE 'test\\_%' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'the audit trail cannot be truncated'
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;
"""

POSTGRESQL_DOWN = """
DROP TRIGGER compliance_auditcheckpoint_insert_guard ON compliance_auditcheckpoint;
DROP FUNCTION compliance_auditcheckpoint_insert_guard();
"""


def up(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRESQL_UP, params=None)


def down(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRESQL_DOWN, params=None)


class Migration(migrations.Migration):
    dependencies = [("compliance", "0008_erase_permission")]

    operations = [migrations.RunPython(up, down)]
