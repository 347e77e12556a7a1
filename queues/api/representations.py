"""Response bodies as plain dicts: pull and batch push return up to 1000 jobs, where a
serializer instance per job would cost more than the database work. Their shapes are
declared in the serializers package for the schema; tests check the two agree."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from security.access import Principal, Verb
from security.masking import masked, masked_text

from ..models import Job, JobState, Queue
from ..selectors import reported_state
from ..services import FlowJob


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.isoformat().replace("+00:00", "Z")


def job_summary(job: Job, queue_name: str, now: datetime) -> dict[str, Any]:
    return {
        "id": str(job.id),
        "queue": queue_name,
        "state": reported_state(job, now),
        "priority": job.priority,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "key": job.key,
        "group": job.group_key,
        "run_at": iso(job.run_at),
        "created_at": iso(job.created_at),
    }


def job_leased(job: Job, queue_name: str) -> dict[str, Any]:
    return {
        "id": str(job.id),
        "queue": queue_name,
        "data": job.data,
        "priority": job.priority,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "progress": job.progress,
        "tags": job.tags,
        "group": job.group_key,
        "lease_id": str(job.lease_id),
        "lease_expires_at": iso(job.lease_expires_at),
        "timeout": job.timeout_ms,
        "deadline_at": iso(job.deadline_at),
        "created_at": iso(job.created_at),
    }


def _error_entries(entries: list[dict[str, Any]], reveal: bool) -> list[dict[str, Any]]:
    """The error history; entries from before codes existed get an empty one."""
    return [
        {
            "attempt": entry.get("attempt"),
            "error": entry.get("error", "") if reveal else masked_text(entry.get("error", "")),
            "code": entry.get("code", ""),
            "at": entry.get("at"),
        }
        for entry in entries
    ]


def job_detail(job: Job, principal: Principal, now: datetime) -> dict[str, Any]:
    """The job as getJob shows it: sensitive fields, and the free texts workers write
    (error, errors[].error, progress_message: anything may be in them), masked unless
    the token may both getJob and reveal on the job's queue. Error codes are shown to
    all, so triage needs no reveal."""
    queue = job.queue.name
    reveal = principal.allows(Verb.GET_JOB, queue) and principal.allows(Verb.REVEAL, queue)
    hidden = () if reveal else (job.queue.sensitive_fields or ())
    body = {
        **job_summary(job, queue, now),
        "data": masked(job.data, hidden),
        "result": masked(job.result, hidden),
        "error": job.error if reveal else masked_text(job.error),
        "error_code": job.error_code,
        "errors": _error_entries(job.errors, reveal),
        "backoff": job.backoff,
        "progress": job.progress,
        "progress_message": (job.progress_message if reveal else masked_text(job.progress_message)),
        "subject": job.subject,
        "tags": job.tags,
        "expires_at": iso(job.expires_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "lease_expires_at": iso(job.lease_expires_at),
        "timeout": job.timeout_ms,
        "deadline_at": iso(job.deadline_at),
    }
    # A completed job keeps the lease that completed it (ack replays), but holds none.
    if job.state == JobState.ACTIVE and job.lease_owner == principal.key:
        body["lease_id"] = str(job.lease_id)
    return body


def job_read(
    job: Job,
    principal: Principal,
    now: datetime,
    *,
    parent: uuid.UUID | None,
    depends_on: list[uuid.UUID],
) -> dict[str, Any]:
    """getJob's answer: the job as job_detail shows it, and its links (ids only)."""
    return {
        **job_detail(job, principal, now),
        "parent": None if parent is None else str(parent),
        "depends_on": [str(job_id) for job_id in depends_on],
    }


def flow_tree(node: FlowJob, now: datetime) -> dict[str, Any]:
    """A flow's jobs as a tree of ids, queues and states."""
    return {
        "id": str(node.job.id),
        "queue": node.queue,
        "state": reported_state(node.job, now),
        "children": [flow_tree(child, now) for child in node.children],
    }


def queue_summary(queue: Queue) -> dict[str, Any]:
    rate = None
    if queue.rate_limit_max is not None:
        rate = {"max": queue.rate_limit_max, "duration_ms": queue.rate_limit_duration_ms}
    return {
        "name": queue.name,
        "paused": queue.paused,
        "rate_limit": rate,
        "concurrency": queue.concurrency_max,
        "group_concurrency": queue.group_concurrency,
        "schema": queue.json_schema,
        "created_at": iso(queue.created_at),
    }
