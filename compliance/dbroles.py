"""The PostgreSQL role the app and the scheduler run as (``manage.py grant_runtime_role``).

The audit trail's triggers bind every role that cannot switch them off, and only a
table's owner (or a superuser) can: ``ALTER TABLE ... DISABLE TRIGGER`` needs
ownership, ``SET session_replication_role`` superuser. So the migrations run as the
owner, and the app and the scheduler as a runtime role that owns nothing, is no
superuser, cannot create roles, is not a member of the owner, and holds only the DML it
needs: SELECT, INSERT, UPDATE and DELETE on the tables (not TRUNCATE, REFERENCES or
TRIGGER), the sequences behind their ids, and EXECUTE on the long-poll wake-up
functions. Default privileges give it the same on whatever later migrations create.
LISTEN/NOTIFY, advisory locks and the ``SET`` of ordinary settings need no grant.

Narrower where the app needs less: ``django_migrations`` is read only (the pods'
``migrate --check``), and audit checkpoints are only ever added. Audit events keep
UPDATE (sealing) and DELETE (retention, run by the scheduler): the triggers decide
which rows those may touch, and the runtime role cannot switch them off."""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.db import connection, transaction

from compliance.audit import Action, Actor, audit_record
from compliance.audit.models import AuditEvent

#: A plain lower-case identifier, so it needs no quoting anywhere it is written.
ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
#: Tables the app reads or appends to but never changes.
NARROWER = {
    "django_migrations": "INSERT, UPDATE, DELETE",
    "compliance_auditcheckpoint": "UPDATE, DELETE",
}


class RoleRefused(Exception):
    """The role cannot be the runtime role: granting to it would protect nothing."""


@dataclass(frozen=True)
class RuntimeGrant:
    role: str
    owner: str
    schema: str
    statements: list[str]


def _one(sql: str, params: list[str]) -> tuple[object, ...] | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row: tuple[object, ...] | None = cursor.fetchone()
    return row


def _refusal(role: str, owner: str, schema: str) -> str:
    """Why ``role`` cannot be the runtime role ('' if it can)."""
    row = _one(
        "SELECT rolsuper, rolcreaterole, pg_has_role(%s, %s, 'MEMBER') "
        "FROM pg_roles WHERE rolname = %s",
        [role, owner, role],
    )
    if row is None:
        return f"role {role} does not exist: create it first (CREATE ROLE {role} LOGIN ...)"
    superuser, createrole, member_of_owner = row
    if role == owner:
        return f"{role} owns the tables: the runtime role must be another role"
    if superuser:
        return f"{role} is a superuser: it could switch the audit triggers off"
    if createrole:
        return f"{role} has CREATEROLE: it could make itself a member of the owner"
    if member_of_owner:
        return f"{role} is a member of {owner}, the tables' owner: it could act as the owner"
    owned = _one(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relowner = (SELECT oid FROM pg_roles WHERE rolname = %s)",
        [schema, role],
    )
    if owned and owned[0]:
        return f"{role} owns {owned[0]} relation(s) in schema {schema}: it must own nothing"
    return ""


def runtime_grant_statements(*, role: str, owner: str, schema: str) -> list[str]:
    """The statements that give ``role`` the runtime privileges (each idempotent)."""
    tables = "SELECT, INSERT, UPDATE, DELETE"
    defaults = f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema}"
    return [
        f"GRANT USAGE ON SCHEMA {schema} TO {role}",
        f"REVOKE CREATE ON SCHEMA {schema} FROM {role}",
        f"GRANT {tables} ON ALL TABLES IN SCHEMA {schema} TO {role}",
        f"REVOKE TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA {schema} FROM {role}",
        *(f"REVOKE {verbs} ON {table} FROM {role}" for table, verbs in NARROWER.items()),
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}",
        f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {schema} TO {role}",
        f"{defaults} GRANT {tables} ON TABLES TO {role}",
        f"{defaults} GRANT USAGE, SELECT ON SEQUENCES TO {role}",
        f"{defaults} GRANT EXECUTE ON FUNCTIONS TO {role}",
    ]


def runtime_role_grant(*, role: str, actor: Actor) -> RuntimeGrant:
    """Give ``role`` what the app and the scheduler need and nothing more, as the owner
    of the tables (the migration's role); refused (RoleRefused) for a role that could
    go around the audit triggers. Idempotent; recorded as ``db.runtimeRoleGrant``."""
    if connection.vendor != "postgresql":
        raise RoleRefused("only PostgreSQL has roles: on SQLite there is nothing to grant")
    if not ROLE_NAME.fullmatch(role):
        raise RoleRefused(f"{role!r} is not a plain role name (lower case, digits, _)")
    row = _one(
        "SELECT tableowner, schemaname FROM pg_tables "
        "WHERE tablename = %s AND schemaname = current_schema()",
        [AuditEvent._meta.db_table],
    )
    if row is None:
        raise RoleRefused("the audit table is missing: run manage.py migrate first")
    owner, schema = str(row[0]), str(row[1])
    if not (ROLE_NAME.fullmatch(owner) and ROLE_NAME.fullmatch(schema)):
        raise RoleRefused(f"owner {owner!r} or schema {schema!r} is not a plain name")
    if refusal := _refusal(role, owner, schema):
        raise RoleRefused(refusal)
    statements = runtime_grant_statements(role=role, owner=owner, schema=schema)
    with transaction.atomic():
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
        audit_record(
            actor=actor,
            action=Action.DB_RUNTIME_ROLE_GRANT,
            details={"role": role, "owner": owner, "schema": schema},
        )
    return RuntimeGrant(role=role, owner=owner, schema=schema, statements=statements)
