"""The waiter's drain (queues.wakeup) never queues an exclusive lock request: one that
waited would hold up every new push to the queue behind the slowest push in flight.
It tries for at most DRAIN_MS instead; a waiter that could not drain re-claims after a
short first wait (queues.wakeup.UNDRAINED_SLICE_SECONDS)."""

from django.db import migrations

from queues.wakeup import PUSHERS_CLASS, WAITERS_CLASS

DRAIN_TRIES = 20  # x 5 ms

CREATE = f"""
DROP FUNCTION IF EXISTS flashq_wait_begin(text);
CREATE FUNCTION flashq_wait_begin(queue text) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    h int := hashtext(queue);
BEGIN
    -- Registered: every push that checks from now on sends a NOTIFY.
    PERFORM pg_advisory_lock_shared({WAITERS_CLASS}, h);
    -- Drain: once no push that checked before we registered is still in flight, the
    -- claim that follows sees their jobs. Tried, never queued for.
    FOR i IN 1..{DRAIN_TRIES} LOOP
        IF pg_try_advisory_lock({PUSHERS_CLASS}, h) THEN
            PERFORM pg_advisory_unlock({PUSHERS_CLASS}, h);
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.005);
    END LOOP;
    RETURN false;
END
$$;
"""

PREVIOUS = f"""
DROP FUNCTION IF EXISTS flashq_wait_begin(text);
CREATE FUNCTION flashq_wait_begin(queue text) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    h int := hashtext(queue);
BEGIN
    PERFORM pg_advisory_lock_shared({WAITERS_CLASS}, h);
    PERFORM pg_advisory_lock({PUSHERS_CLASS}, h);
    PERFORM pg_advisory_unlock({PUSHERS_CLASS}, h);
END
$$;
"""


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def restore(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PREVIOUS)


class Migration(migrations.Migration):
    dependencies = [("queues", "0015_job_table_tuning")]

    operations = [migrations.RunPython(create, restore)]
