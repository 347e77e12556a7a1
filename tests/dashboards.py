"""A queue with a job in every reported state, made through the services as in
production (so the rollup's triggers count them as they would), shared by the
dashboard's tests and its browser tests."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.utils import timezone

from queues import pulling, services
from queues.jobspec import JobSpec
from queues.models import Job

from .browsers import SETUP

OWNER = "family:t"


def pushed(queue: str, **spec: object) -> uuid.UUID:
    job_spec = JobSpec(data={"n": 1}, **spec)  # type: ignore[arg-type]
    return services.job_push(queue_name=queue, spec=job_spec, owner=OWNER, actor=SETUP).job.id


def claimed(queue: str, count: int = 1) -> list[Job]:
    return list(
        pulling.jobs_pull(
            queue_name=queue, count=count, lease_seconds=300, owner=OWNER, actor=SETUP
        )
    )


def finished(queue: str, *, ok: bool) -> uuid.UUID:
    """A job pushed, claimed and acked (``ok``) or failed for good."""
    pushed(queue, max_attempts=1)
    [job] = claimed(queue)
    assert job.lease_id is not None
    if ok:
        services.job_ack(job_id=job.id, lease_id=job.lease_id, owner=OWNER, actor=SETUP)
    else:
        services.job_fail(
            job_id=job.id,
            lease_id=job.lease_id,
            owner=OWNER,
            error="boom",
            retry=False,
            actor=SETUP,
        )
    return job.id


def every_state(queue: str) -> dict[str, int]:
    """In ``queue``: 2 completed, 3 failed (one of them retried since, so waiting), 1
    cancelled, 1 active, 1 delayed, 1 expired (a waiting job past its ttl), 2 waiting;
    returns what the dashboard should count."""
    for _ in range(2):
        finished(queue, ok=True)
    failed = [finished(queue, ok=False) for _ in range(3)]
    services.job_retry(job_id=failed[0], actor=SETUP, reason="fixed")
    services.job_cancel(job_id=pushed(queue), actor=SETUP)
    active = pushed(queue, priority=10)
    assert [job.id for job in claimed(queue)] == [active]
    pushed(queue, delay_ms=3_600_000)
    expiring = pushed(queue, ttl_ms=60_000)
    Job.objects.filter(id=expiring).update(expires_at=timezone.now() - timedelta(seconds=1))
    pushed(queue)
    return {
        "waiting": 2,  # the retried one and the last push
        "delayed": 1,
        "waiting-children": 0,
        "active": 1,
        "completed": 2,
        "failed": 2,
        "cancelled": 1,
        "expired": 1,
        "completed_1h": 2,
        "completed_24h": 2,
        "failed_1h": 3,  # history: the retried one still counts
        "failed_24h": 3,
    }
