"""System checks on the database (``manage.py check --database default``, and every
``migrate``): PostgreSQL's autovacuum, and the track_counts it works from, must be on,
or the job table's dead row versions are never cleaned and every claim and lease check
walks more of them (migrations 0015 and 0027 have it vacuum the churning tables at 2%
changed)."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Tags, register
from django.core.checks import Warning as CheckWarning
from django.db import connections

# Autovacuum runs only with both on (it works from the statistics track_counts keeps).
NEEDED = ("autovacuum", "track_counts")


def autovacuum_warning(alias: str, settings: dict[str, str]) -> list[CheckMessage]:
    """The warning for database ``alias`` whose server has ``settings`` (name: value)."""
    off = [
        f"{name} is {settings.get(name, 'unknown')}"
        for name in NEEDED
        if settings.get(name) != "on"
    ]
    if not off:
        return []
    return [
        CheckWarning(
            f"PostgreSQL's {' and '.join(off)} for database {alias!r}: autovacuum never "
            "cleans the job table's dead rows, and pulls and acks slow down as they pile up.",
            hint="Set autovacuum = on and track_counts = on in postgresql.conf (the "
            "defaults) and reload.",
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
            cursor.execute(
                "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", [list(NEEDED)]
            )
            settings = dict(cursor.fetchall())
        messages += autovacuum_warning(alias, settings)
    return messages
