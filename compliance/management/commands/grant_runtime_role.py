"""``manage.py grant_runtime_role ROLE``: give the PostgreSQL role the app and the
scheduler connect as exactly the privileges they need (compliance.dbroles), as the
tables' owner, after ``migrate``. Idempotent; refused for a superuser, the owner itself,
a member of the owner or a role with CREATEROLE; the run is an audit event."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from compliance.audit import Actor
from compliance.dbroles import RoleRefused, runtime_role_grant


class Command(BaseCommand):
    help = (
        "Grant ROLE (the app's and the scheduler's database role) SELECT, INSERT, UPDATE "
        "and DELETE on the app's tables, its sequences and functions, now and for tables "
        "later migrations create. Run as the tables' owner, after migrate."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("role", help="the runtime role, e.g. flashq_app")

    def handle(self, *args: Any, **options: Any) -> str:
        try:
            grant = runtime_role_grant(
                role=options["role"], actor=Actor.command("grant_runtime_role")
            )
        except RoleRefused as exc:
            raise CommandError(str(exc)) from exc
        if options["verbosity"] > 1:
            for statement in grant.statements:
                self.stdout.write(statement)
        return (
            f"{grant.role} may use the tables of schema {grant.schema}, owned by "
            f"{grant.owner}, and nothing more."
        )
