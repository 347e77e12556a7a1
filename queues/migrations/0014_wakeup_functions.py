"""PostgreSQL functions behind queues.wakeup: a push NOTIFYs only when a long poll is
waiting on its queue (see that module for the protocol). SQLite has no NOTIFY."""

from django.db import migrations

from queues.wakeup import PUSHERS_CLASS, WAITERS_CLASS

CREATE = f"""
CREATE OR REPLACE FUNCTION flashq_wake(queue text) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    h int := hashtext(queue);
BEGIN
    -- Held until this push commits: a waiter registering now waits for that commit.
    PERFORM pg_advisory_xact_lock_shared({PUSHERS_CLASS}, h);
    IF pg_try_advisory_lock({WAITERS_CLASS}, h) THEN
        -- Nobody holds the waiters' shared lock: nobody to wake.
        PERFORM pg_advisory_unlock({WAITERS_CLASS}, h);
        RETURN false;
    END IF;
    PERFORM pg_notify('flashq_jobs', queue);
    RETURN true;
END
$$;

CREATE OR REPLACE FUNCTION flashq_wait_begin(queue text) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    h int := hashtext(queue);
BEGIN
    -- Registered: every push that checks from now on sends a NOTIFY.
    PERFORM pg_advisory_lock_shared({WAITERS_CLASS}, h);
    -- Drain: wait for pushes that checked before we registered to commit, so the
    -- claim that follows sees their jobs.
    PERFORM pg_advisory_lock({PUSHERS_CLASS}, h);
    PERFORM pg_advisory_unlock({PUSHERS_CLASS}, h);
END
$$;

CREATE OR REPLACE FUNCTION flashq_wait_end(queue text) RETURNS void
LANGUAGE sql VOLATILE AS $$
    SELECT pg_advisory_unlock_shared({WAITERS_CLASS}, hashtext(queue));
$$;
"""

DROP = """
DROP FUNCTION IF EXISTS flashq_wake(text);
DROP FUNCTION IF EXISTS flashq_wait_begin(text);
DROP FUNCTION IF EXISTS flashq_wait_end(text);
"""


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("queues", "0013_queue_object_permissions")]

    operations = [migrations.RunPython(create, drop)]
