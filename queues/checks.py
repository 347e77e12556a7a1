"""System checks on the database (``manage.py check --database default``, and every
``migrate``): PostgreSQL's autovacuum must be on, or the job table's dead row versions
are never cleaned and every claim and lease check walks more of them
(migrations 0015 and 0027 have it vacuum the churning tables at 2% changed)."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Tags, register
from django.core.checks import Warning as CheckWarning
from django.db import connections


def autovacuum_warning(alias: str, setting: str) -> list[CheckMessage]:
    """The warning for database ``alias`` whose ``autovacuum`` setting reads ``setting``."""
    if setting == "on":
        return []
    return [
        CheckWarning(
            f"PostgreSQL's autovacuum is {setting} for database {alias!r}: the job table's "
            "dead rows are never cleaned, and pulls and acks slow down as they pile up.",
            hint="Set autovacuum = on in postgresql.conf (the default) and reload.",
            id="flashq.W001",
        )
    ]


@register(Tags.database)
def check_autovacuum(app_configs: Any, databases: Any = None, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    for alias in databases or ():
        connection = connections[alias]
        if connection.vendor != "postgresql":
            continue
        with connection.cursor() as cursor:
            cursor.execute("SELECT setting FROM pg_settings WHERE name = 'autovacuum'")
            row = cursor.fetchone()
        messages += autovacuum_warning(alias, row[0] if row else "unknown")
    return messages
