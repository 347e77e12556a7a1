"""Issue 17: "SQL as the app" must not mean the tables' owner. The app and the scheduler
run as a runtime role (``manage.py grant_runtime_role``) that does all of the app's work
and cannot switch the audit triggers off: only the owner or a superuser can, and the
keyed chain and the external anchor catch what they do then (test_audit_attacks).

Each test makes its own role, with a unique name, inside the test's transaction, which
is rolled back at the end: the role and its grants go with it. The test's connection
acts as that role with SET LOCAL ROLE, as a separate login would."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from io import StringIO

import pytest
from django.apps import apps
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.test import Client

from compliance.audit import chain, verification
from compliance.models import AuditCheckpoint, AuditEvent
from queues.models import Job, JobState

from .support import Api, make_token, postgres_only, pull, push
from .test_audit_chain import (  # noqa: F401 (_audit_policy: an autouse fixture)
    _audit_policy,
    _backdate,
    _events,
)

pytestmark = [pytest.mark.django_db, postgres_only]

#: What the owner or a superuser can do to go around the audit triggers, and the
#: runtime role must not.
OWNER_ONLY = [
    "ALTER TABLE compliance_auditevent DISABLE TRIGGER ALL",
    "ALTER TABLE compliance_auditevent DISABLE TRIGGER compliance_auditevent_guard",
    "ALTER TABLE compliance_auditcheckpoint DISABLE TRIGGER USER",
    "SET session_replication_role = replica",
    "SET LOCAL session_replication_role = replica",
    "DROP TRIGGER compliance_auditevent_guard ON compliance_auditevent",
    "TRUNCATE compliance_auditevent",
    "CREATE OR REPLACE FUNCTION compliance_auditevent_guard() RETURNS trigger "
    "AS $$ BEGIN RETURN OLD; END; $$ LANGUAGE plpgsql",
    "ALTER TABLE compliance_retentionpolicy DROP CONSTRAINT retention_audit_floor",
    "CREATE TRIGGER sneak BEFORE DELETE ON compliance_auditevent "
    "FOR EACH ROW EXECUTE FUNCTION compliance_auditevent_guard()",
    "ALTER TABLE compliance_auditevent OWNER TO CURRENT_USER",
    "ALTER ROLE CURRENT_USER SUPERUSER",
]


def _execute(sql: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql)


@pytest.fixture
def runtime_role() -> str:
    """A fresh role that may log in, granted as the migration job grants it."""
    role = f"flashq_rt_{uuid.uuid4().hex[:12]}"
    _execute(f"CREATE ROLE {role} LOGIN")
    out = StringIO()
    call_command("grant_runtime_role", role, stdout=out)
    assert f"{role} may use the tables of schema public" in out.getvalue()
    return role


@contextmanager
def acting_as(role: str) -> Iterator[None]:
    """The connection runs as ``role`` until the block ends (then as the test's
    superuser again, which only the session's own user can go back to)."""
    _execute(f"SET LOCAL ROLE {role}")
    try:
        assert _current_user() == role
        yield
    finally:
        _execute("RESET ROLE")


def _current_user() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        [(user,)] = cursor.fetchall()
    return str(user)


def test_the_runtime_role_runs_push_pull_ack_sealing_and_retention(
    api: Api, runtime_role: str
) -> None:
    producer = make_token("producer", "jobs:*=push")
    worker = make_token("worker", "jobs:*=pull,ack")
    scraper = make_token("prometheus", "*=metrics")
    _events(2)
    chain.seal_all()
    old = list(AuditEvent.objects.all())
    _backdate(old, 100)  # the tokens' events and these: sealed 100 days ago, due
    with acting_as(runtime_role):
        job = push(api, producer, queue="jobs:a", data={"n": 1})
        [claimed] = pull(api, worker, queue="jobs:a", count=1)
        assert claimed["id"] == job["id"]
        call = api.post(
            f"/jobs/{job['id']}/ack", {"lease_id": claimed["lease_id"], "result": {}}, as_=worker
        )
        assert call.status == 200, call.body
        assert chain.seal_all() >= 3  # the push's, the pull's and the ack's events
        assert verification.verify().ok
        scrape = Client(HTTP_HOST="localhost").get(
            "/metrics", HTTP_AUTHORIZATION=f"Bearer {scraper}"
        )
        assert scrape.status_code == 200  # its gauges read the jobs, audit and task tables
        assert "flashq_audit_unsealed_events" in scrape.content.decode()
        out = StringIO()
        call_command("retention_cleanup", stdout=out)
        assert f"Retired {len(old)} audit event(s)" in out.getvalue()
        assert AuditCheckpoint.objects.count() == 1
        assert not AuditEvent.objects.filter(pk__in=[e.pk for e in old]).exists()
        assert verification.verify().ok
    assert Job.objects.get(id=job["id"]).state == JobState.COMPLETED


@pytest.mark.parametrize("sql", OWNER_ONLY)
def test_the_runtime_role_cannot_go_around_the_audit_triggers(runtime_role: str, sql: str) -> None:
    with acting_as(runtime_role):
        with pytest.raises(DatabaseError) as caught, transaction.atomic():
            _execute(sql)
        # 42501: insufficient_privilege ("must be owner", "permission denied")
        assert getattr(caught.value.__cause__, "sqlstate", "") == "42501", caught.value


def test_nor_edit_or_delete_an_event_nor_truncate_by_setting_the_test_switch(
    runtime_role: str,
) -> None:
    """The triggers bind it as they bind everyone; TRUNCATE is not even granted, so the
    test suite's session switch (flashq.allow_audit_truncate) does not help it."""
    [event] = _events(1)
    chain.seal_all()
    with acting_as(runtime_role):
        for sql in (
            "UPDATE compliance_auditevent SET actor = 'x'",
            "DELETE FROM compliance_auditevent",
            "UPDATE compliance_auditcheckpoint SET reason = 'x'",
            "DELETE FROM compliance_auditcheckpoint",
        ):
            with pytest.raises(DatabaseError), transaction.atomic():
                _execute(sql)
        _execute("SET LOCAL flashq.allow_audit_truncate = on")
        with pytest.raises(DatabaseError, match="permission denied"), transaction.atomic():
            _execute("TRUNCATE compliance_auditevent")
    assert AuditEvent.objects.filter(pk=event.pk, actor=event.actor).exists()


def test_every_table_of_every_app_is_granted_and_none_beyond_dml(runtime_role: str) -> None:
    """Including django-q2's broker tables and whatever a later migration creates."""
    _execute("CREATE TABLE later_migration_table (id bigserial PRIMARY KEY)")
    tables = {model._meta.db_table for model in apps.get_models()} | {"later_migration_table"}
    readonly = {"django_migrations"}
    with connection.cursor() as cursor:
        for table in sorted(tables):
            cursor.execute(
                "SELECT has_table_privilege(%s, %s, 'SELECT'), "
                "has_table_privilege(%s, %s, 'INSERT'), "
                "has_table_privilege(%s, %s, 'TRUNCATE'), "
                "has_table_privilege(%s, %s, 'TRIGGER')",
                [runtime_role, table] * 4,
            )
            select, insert, truncate, trigger = cursor.fetchone()
            assert select and not truncate and not trigger, table
            assert insert == (table not in readonly), table
        cursor.execute(
            "SELECT has_sequence_privilege(%s, 'later_migration_table_id_seq', 'USAGE')",
            [runtime_role],
        )
        assert cursor.fetchone() == (True,)
        for function in ("flashq_wake", "flashq_wait_begin", "flashq_wait_end"):
            signature = f"{function}(text)"
            cursor.execute(
                "SELECT has_function_privilege(%s, %s, 'EXECUTE')", [runtime_role, signature]
            )
            assert cursor.fetchone() == (True,), function


def test_granting_is_idempotent_and_audited(runtime_role: str) -> None:
    call_command("grant_runtime_role", runtime_role, stdout=StringIO())
    events = AuditEvent.objects.filter(action="db.runtimeRoleGrant").order_by("id")
    assert [e.details["role"] for e in events] == [runtime_role, runtime_role]
    assert events[0].actor == "command:grant_runtime_role"


@pytest.mark.parametrize(
    ("attributes", "refusal"),
    [
        ("SUPERUSER", "is a superuser"),
        ("CREATEROLE", "has CREATEROLE"),
        ("IN ROLE postgres", "is a member of postgres"),
    ],
)
def test_a_role_that_could_act_as_the_owner_is_refused(attributes: str, refusal: str) -> None:
    role = f"flashq_rt_{uuid.uuid4().hex[:12]}"
    _execute(f"CREATE ROLE {role} LOGIN {attributes}")
    with pytest.raises(CommandError, match=refusal):
        call_command("grant_runtime_role", role, stdout=StringIO())


def test_the_owner_itself_a_missing_role_and_an_odd_name_are_refused() -> None:
    with pytest.raises(CommandError, match="owns the tables"):
        call_command("grant_runtime_role", _current_user(), stdout=StringIO())
    with pytest.raises(CommandError, match="does not exist"):
        call_command("grant_runtime_role", "flashq_nobody_here", stdout=StringIO())
    with pytest.raises(CommandError, match="not a plain role name"):
        call_command("grant_runtime_role", 'x"; DROP TABLE y; --', stdout=StringIO())
    assert not AuditEvent.objects.filter(action="db.runtimeRoleGrant").exists()


def test_a_role_owning_a_table_is_refused() -> None:
    role = f"flashq_rt_{uuid.uuid4().hex[:12]}"
    _execute(f"CREATE ROLE {role} LOGIN")
    _execute("CREATE TABLE owned_elsewhere (id int)")
    _execute(f"ALTER TABLE owned_elsewhere OWNER TO {role}")
    with pytest.raises(CommandError, match="owns 1 relation"):
        call_command("grant_runtime_role", role, stdout=StringIO())
