# The audit chain becomes keyed, and sealing the database's own act (issue 17):
# - each link is an HMAC-SHA256 under AUDIT_CHAIN_KEY (kept out of the database), with
#   the key id in a new column it covers; checkpoints get a key id and a MAC chained to
#   the previous checkpoint's;
# - events already sealed under plain SHA-256 are first verified as they are (a broken
#   chain stops the migration: re-keying it would launder the tampering), then re-sealed
#   under the current key with the guard triggers switched off inside this migration's
#   transaction (the same for the checkpoints' MACs);
# - PostgreSQL triggers: an event may be updated only once, from unsealed to sealed, as
#   the next link of the chain (seq = head + 1, prev_hash = the head's hash, sealed_at =
#   now(), a key id and a 64-hex hash), with every recorded column unchanged; an INSERT
#   may not arrive sealed (a trigger whose WHEN clause is false for the application's
#   own inserts, so the hot path runs no trigger function); an event may be deleted only
#   if sealed, at seq >= 1, covered by the latest checkpoint and sealed longer ago than
#   the audit retention policy (the policy row retention_cleanup reads; no row: never);
#   a checkpoint may only be inserted at an event past that age.
# Only a role that may disable triggers (the table's owner, a superuser with
# session_replication_role = replica) goes around this: then audit_verify names what
# was changed (the HMAC) and the external anchor what was cut off at the end.

import hashlib
import json
from datetime import UTC

from django.db import migrations, models

GENESIS = "0" * 64
BATCH = 1000
# The fields the SHA-256 chain of migration 0004 covered, frozen here.
LEGACY_FIELDS = (
    "action",
    "queue",
    "job_ids",
    "token_id",
    "user_id",
    "actor",
    "client_ip",
    "outcome",
    "status",
    "request_id",
    "client_request_id",
    "details",
)

GUARDS_UP = """
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
           OR NEW.hash !~ '^[0-9a-f]{64}$' OR NEW.chain_key_id = '' THEN
            RAISE EXCEPTION 'audit event % may only be sealed as the next link of the chain '
                '(seq %, its head''s hash, sealed_at now()): refused', OLD.id, head_seq + 1
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END IF;
    SELECT p.max_age_days INTO age FROM compliance_retentionpolicy p
        WHERE p.target = 'audit' AND p.queue_pattern = '*';
    IF OLD.seq >= 1 AND age IS NOT NULL
       AND OLD.sealed_at < now() - make_interval(days => age)
       AND OLD.seq <= (SELECT max(c.seq) FROM compliance_auditcheckpoint c) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit events are append-only: DELETE of event % refused', OLD.id
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION compliance_auditevent_no_sealed_insert() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit events are written unsealed: a sealed INSERT is refused'
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;

-- The WHEN clause is evaluated without calling the function: the application's own
-- (unsealed) inserts run no trigger code.
CREATE TRIGGER compliance_auditevent_no_sealed_insert
    BEFORE INSERT ON compliance_auditevent
    FOR EACH ROW
    WHEN (NEW.seq IS NOT NULL OR NEW.sealed_at IS NOT NULL OR NEW.hash <> ''
          OR NEW.prev_hash <> '' OR NEW.chain_key_id <> '')
    EXECUTE FUNCTION compliance_auditevent_no_sealed_insert();

CREATE OR REPLACE FUNCTION compliance_auditcheckpoint_insert_guard() RETURNS trigger AS $$
DECLARE
    age integer;
BEGIN
    IF EXISTS (SELECT 1 FROM compliance_auditcheckpoint c WHERE c.seq >= NEW.seq) THEN
        RAISE EXCEPTION 'audit checkpoints only move forward: seq % refused', NEW.seq
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    SELECT p.max_age_days INTO age FROM compliance_retentionpolicy p
        WHERE p.target = 'audit' AND p.queue_pattern = '*';
    IF age IS NULL OR NOT EXISTS (
        SELECT 1 FROM compliance_auditevent e
        WHERE e.seq = NEW.seq AND e.seq >= 1 AND e.hash = NEW.hash
          AND e.sealed_at < now() - make_interval(days => age)
    ) THEN
        RAISE EXCEPTION 'an audit checkpoint must name a sealed event, its hash, past the '
            'audit retention policy: seq % refused', NEW.seq
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
"""

# Migration 0009's functions, for going back.
GUARDS_DOWN = """
DROP TRIGGER compliance_auditevent_no_sealed_insert ON compliance_auditevent;
DROP FUNCTION compliance_auditevent_no_sealed_insert();

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

CREATE OR REPLACE FUNCTION compliance_auditcheckpoint_insert_guard() RETURNS trigger AS $$
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
"""

_GUARDED = (
    ("compliance_auditevent", "compliance_auditevent_guard"),
    ("compliance_auditcheckpoint", "compliance_auditcheckpoint_guard"),
)


def _legacy_link(event, *, seq, prev_hash):
    created = event.created_at.astimezone(UTC) if event.created_at else None
    body = {
        "seq": seq,
        "prev_hash": prev_hash,
        "id": event.pk,
        "created_at": created.isoformat(timespec="microseconds") if created else None,
        **{name: getattr(event, name) for name in LEGACY_FIELDS},
    }
    data = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(prev_hash.encode() + data).hexdigest()


def _keyed_link(event, *, seq, prev_hash, key_id):
    from compliance.audit.chainkeys import link_hash

    return link_hash(event, seq=seq, prev_hash=prev_hash, key_id=key_id)


def _sealed(AuditEvent, after):
    last = after
    while batch := list(AuditEvent.objects.filter(seq__gt=last).order_by("seq")[:BATCH]):
        yield from batch
        last = batch[-1].seq


def _relink(apps, schema_editor, *, keyed):
    """Verify every sealed event under the chain it was sealed in, then seal it again
    under the other one (``keyed``: SHA-256 -> HMAC; else back)."""
    AuditEvent = apps.get_model("compliance", "AuditEvent")
    AuditCheckpoint = apps.get_model("compliance", "AuditCheckpoint")
    if not AuditEvent.objects.filter(seq__isnull=False).exists() and not (
        AuditCheckpoint.objects.exists()
    ):
        return
    from compliance.audit.chainkeys import chain_keys, checkpoint_mac

    key_id = chain_keys().current if keyed else ""
    checkpoint = AuditCheckpoint.objects.order_by("-seq").first()
    start, old_prev = (checkpoint.seq, checkpoint.hash) if checkpoint else (0, GENESIS)
    if AuditEvent.objects.filter(seq__lte=start).exists():
        raise RuntimeError("an audit event lies before the latest checkpoint: not re-keyed")
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        for table, trigger in _GUARDED:
            schema_editor.execute(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}")
    expected, new_prev, changed = start + 1, old_prev, []
    for event in _sealed(AuditEvent, start):
        if keyed:
            old = _legacy_link(event, seq=expected, prev_hash=old_prev)
        else:
            old = _keyed_link(event, seq=expected, prev_hash=old_prev, key_id=event.chain_key_id)
        if event.seq != expected or event.prev_hash != old_prev or event.hash != old:
            raise RuntimeError(
                f"the audit chain does not verify at event {event.pk} (seq {event.seq}): "
                "investigate with audit_verify before migrating; nothing was re-sealed"
            )
        old_prev = event.hash
        event.prev_hash, event.chain_key_id = new_prev, key_id
        if keyed:
            event.hash = _keyed_link(event, seq=expected, prev_hash=new_prev, key_id=key_id)
        else:
            event.hash = _legacy_link(event, seq=expected, prev_hash=new_prev)
        new_prev, expected = event.hash, expected + 1
        changed.append(event)
        if len(changed) >= BATCH:
            AuditEvent.objects.bulk_update(changed, ["prev_hash", "hash", "chain_key_id"])
            changed = []
    AuditEvent.objects.bulk_update(changed, ["prev_hash", "hash", "chain_key_id"])
    prev_mac = GENESIS
    for point in AuditCheckpoint.objects.order_by("seq"):
        point.key_id = key_id
        point.mac = (
            checkpoint_mac(
                seq=point.seq,
                hash=point.hash,
                events_removed=point.events_removed,
                reason=point.reason,
                created_at=point.created_at,
                key_id=key_id,
                prev_mac=prev_mac,
            )
            if keyed
            else ""
        )
        prev_mac = point.mac
        point.save(update_fields=["key_id", "mac"])
    if vendor == "postgresql":
        for table, trigger in _GUARDED:
            schema_editor.execute(f"ALTER TABLE {table} ENABLE TRIGGER {trigger}")


def up(apps, schema_editor):
    _relink(apps, schema_editor, keyed=True)
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(GUARDS_UP, params=None)


def down(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(GUARDS_DOWN, params=None)
    _relink(apps, schema_editor, keyed=False)


class Migration(migrations.Migration):
    dependencies = [("compliance", "0010_erasure_no_elsewhere")]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="chain_key_id",
            field=models.CharField(blank=True, default="", editable=False, max_length=32),
        ),
        migrations.AddField(
            model_name="auditcheckpoint",
            name="key_id",
            field=models.CharField(blank=True, default="", max_length=32),
        ),
        migrations.AddField(
            model_name="auditcheckpoint",
            name="mac",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.RunPython(up, down),
    ]
