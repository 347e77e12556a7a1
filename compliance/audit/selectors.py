"""Reads of the audit trail shared by the admin and the export."""

from __future__ import annotations

from django.db import connection
from django.db.models import Q


def audit_events_naming_job(*, job_id: str) -> Q:
    """Events whose ``job_ids`` list holds ``job_id`` (a UUID in canonical form). On
    PostgreSQL ``job_ids`` is jsonb and containment is exact; SQLite stores the list as
    JSON text, where the quoted id is matched as a substring of it."""
    if connection.vendor == "postgresql":
        return Q(job_ids__contains=[job_id])
    return Q(job_ids__icontains=f'"{job_id}"')
