"""The counters and histograms of flashq_project.metrics: what this app server did. No
Django imports, so compliance.audit can count each event as it commits."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter, Histogram

# Multiprocess mode (deploy/gunicorn.conf.py) writes the values to files in this
# directory; a process started with it set (a management command in the same
# environment) must not fail to import because it is gone.
if _directory := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(_directory, exist_ok=True)

# -- what this server did --------------------------------------------------------------

JOBS_PUSHED = Counter("flashq_jobs_pushed", "Jobs created by pushes", ["queue"])
JOBS_COMPLETED = Counter("flashq_jobs_completed", "Jobs acked", ["queue"])
JOBS_FAILED = Counter("flashq_jobs_failed", "Jobs that failed for good", ["queue"])
JOBS_RETRIED = Counter(
    "flashq_jobs_retried", "Failed attempts sent back to wait, and jobs retried", ["queue"]
)
JOBS_EXPIRED = Counter("flashq_jobs_expired", "Jobs expired by their ttl", ["queue"])
AUDIT_EVENTS = Counter("flashq_audit_events", "Audit events written", ["outcome"])
REQUESTS = Histogram(
    "flashq_request_duration_seconds",
    "API request latency by operation and status class",
    ["operation", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
AUTH_FAILURES = Counter(
    "flashq_auth_failures", "API calls refused for their credentials (401)", ["reason"]
)
DENIALS = Counter("flashq_permission_denials", "API calls refused by permissions (403)")
RATE_LIMITED = Counter("flashq_rate_limited", "API calls refused by a rate limit (429)")
LONG_POLLS_OVER_CAP = Counter(
    "flashq_long_polls_over_cap",
    "Long polls (pulls, job waits) that would have waited but were answered at once "
    "(with Retry-After): the process held as many as it allows, in all or for the token "
    "family",
)

WEBHOOK_DELIVERIES = Counter(
    "flashq_webhook_deliveries",
    "Webhook delivery attempts by outcome: delivered (2xx), failed (another status, or "
    "no answer), refused (the SSRF guard)",
    ["outcome"],
)
WEBHOOKS_DISABLED = Counter(
    "flashq_webhooks_disabled",
    "Webhooks disabled after WEBHOOK_MAX_FAILURES failed deliveries in a row",
    ["queue"],
)


def _count(counter: Counter, queue: str, amount: float) -> None:
    if amount > 0:
        counter.labels(queue=queue or "(several)").inc(amount)


def count_event(
    *, action: str, queue: str, job_ids: list[str], details: Mapping[str, Any], outcome: str
) -> None:
    """An audit event committed: move the counters it stands for."""
    AUDIT_EVENTS.labels(outcome=outcome).inc()
    if outcome != "ok":
        return
    if action == "push":
        # A batch's event counts what it created; a single push's says whether it did.
        _count(JOBS_PUSHED, queue, int(details.get("created") or 0))
    elif action == "ack":
        # The acked jobs (job_ids also lists the dependents they settled), less the
        # repeated acks, which completed nothing (queues.services.reports).
        acked = 0 if details.get("replay") else int(details.get("count", 1))
        _count(JOBS_COMPLETED, queue, acked - int(details.get("replayed", 0)))
    elif action == "pull":
        acked = int(details.get("acked", 0)) - int(details.get("replayed", 0))
        _count(JOBS_COMPLETED, queue, acked)
    elif action == "fail":
        failed = details.get("state") == "failed"
        _count(JOBS_FAILED if failed else JOBS_RETRIED, queue, 1)
    elif action == "lease.recover":
        _count(JOBS_FAILED, queue, int(details.get("failed", 0)))
        _count(JOBS_RETRIED, queue, int(details.get("waiting", 0)))
    elif action == "retry":
        _count(JOBS_RETRIED, queue, 1)
    elif action == "ttl.expire":
        _count(JOBS_EXPIRED, queue, int(details.get("count", 0)))
    elif action == "webhook.disable":
        _count(WEBHOOKS_DISABLED, queue, 1)


def observe_request(*, operation: str, status: int, seconds: float, auth_reason: str) -> None:
    """An API call answered (every call, allowed or not)."""
    REQUESTS.labels(operation=operation, status=f"{status // 100}xx").observe(seconds)
    if status == 401:
        AUTH_FAILURES.labels(reason=auth_reason or "missing").inc()
    elif status == 403:
        DENIALS.inc()
    elif status == 429:
        RATE_LIMITED.inc()
