"""Prometheus metrics: ``GET /metrics`` in the text exposition format.

Two kinds, kept apart on purpose:

- Counters and histograms of what this app server did (jobs pushed, completed,
  failed, retried, expired per queue; request latency per operation; authentication
  failures, permission denials and rate-limited calls; audit events written). They are
  counted as audit events commit (``count_event``, called by compliance.audit), so a
  counter moves exactly when the audit trail does, and by the API view as it answers
  (``observe_request``). Under gunicorn they are summed over the server's worker
  processes (prometheus_client's multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR``, set
  up by deploy/gunicorn.conf.py); across app servers Prometheus adds them up
  (``sum by (queue)``). What the scheduler changes (ttl expiry and lease recovery by the
  sweeper, retention) is counted in its own processes and served by the scheduler on
  ``SCHEDULER_METRICS_PORT`` (``serve_scheduler_metrics``): scrape both. So are the
  webhook sender's (``manage.py run_webhooks``: deliveries by outcome, webhooks
  disabled), when it is started with that variable set.
- Gauges read from the database at scrape time (jobs waiting, delayed, waiting for
  children or dependencies, and active, and the oldest ready job's age per queue;
  unsealed audit events and the oldest one's age; the last retention run): the same
  figure from every app server (``max``, not ``sum``, across them).

Labels are queue names, operation names, status classes and refusal reasons: never
payloads, token names or data subjects. A scrape is allowed from ``METRICS_ALLOWED_CIDRS``
or with a token holding the ``metrics`` verb on ``*`` (``--allow '*=metrics'``);
anything else is refused with 401 or 403 and an audit event. A scrape that is let in is
not audited (it would add an event every few seconds per scraper), like ``/healthz``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry, multiprocess, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import REGISTRY, Collector

from compliance.audit import Action, Actor, ActorKind, audit_refusal
from compliance.audit.actors import request_actor
from compliance.audit.floods import record_throttled_refusal
from kernel.clientip import address_allowed
from kernel.problems import CONTENT_TYPE, problem_body
from kernel.ratelimit import count_auth_failure
from security.access import WILDCARD, Verb
from security.authentication import AuthThrottled, TokenRefused, note_auth_failure, principal_for

logger = logging.getLogger("flashq.metrics")

# -- what the database says ----------------------------------------------------------------

# Waiting jobs past their ttl are left out (pull skips them; the sweeper expires them).
_QUEUE_GAUGES = """
    SELECT q.name,
           count(*) FILTER (WHERE j.state = 'waiting' AND j.run_at <= %(now)s),
           count(*) FILTER (WHERE j.state = 'waiting' AND j.run_at > %(now)s),
           count(*) FILTER (WHERE j.state = 'waiting-children'),
           count(*) FILTER (WHERE j.state = 'active'),
           min(j.run_at) FILTER (WHERE j.state = 'waiting' AND j.run_at <= %(now)s)
    FROM queues_queue q LEFT JOIN queues_job j
      ON j.queue_id = q.id AND j.state IN ('waiting', 'waiting-children', 'active')
     AND (j.expires_at IS NULL OR j.expires_at > %(now)s)
    GROUP BY q.name
"""
_AUDIT_GAUGES = """
    SELECT count(*), min(created_at) FROM compliance_auditevent WHERE seq IS NULL
"""
# The scheduler's last successful run of the retention task (django-q2 keeps the last
# runs of each task: save_limit_per in settings).
_LAST_RETENTION = """
    SELECT max(stopped) FROM django_q_task
    WHERE func = 'compliance.tasks.run_retention' AND success
"""

# Webhooks switched off after too many failed deliveries in a row (a PUT enables them).
_DISABLED_WEBHOOKS = """
    SELECT q.name, count(*) FROM queues_webhook w JOIN queues_queue q ON q.id = w.queue_id
    WHERE NOT w.enabled GROUP BY q.name
"""


_UP = "flashq_metrics_database_up"
_UP_HELP = "1 when this scrape could read the database gauges"


def _moment(value: Any) -> datetime | None:
    """A datetime column's value, aware (SQLite hands back text, naive UTC)."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(moment, datetime)
    return timezone.make_aware(moment, UTC) if timezone.is_naive(moment) else moment


def _age(now: datetime, value: Any) -> float:
    moment = _moment(value)
    return 0.0 if moment is None else max(0.0, (now - moment).total_seconds())


class DatabaseCollector(Collector):
    """Gauges read at scrape time, the same from every app server."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = timezone.now()
        params = {"now": connection.ops.adapt_datetimefield_value(now)}
        waiting = GaugeMetricFamily(
            "flashq_jobs_waiting", "Jobs ready to be pulled", labels=["queue"]
        )
        delayed = GaugeMetricFamily(
            "flashq_jobs_delayed", "Waiting jobs not due yet", labels=["queue"]
        )
        held = GaugeMetricFamily(
            "flashq_jobs_waiting_children",
            "Jobs held back until the jobs they wait for (children, depends_on) finish",
            labels=["queue"],
        )
        active = GaugeMetricFamily("flashq_jobs_active", "Jobs under a lease", labels=["queue"])
        oldest = GaugeMetricFamily(
            "flashq_oldest_waiting_seconds",
            "Age of the queue's oldest ready job (0 when none)",
            labels=["queue"],
        )
        try:
            with connection.cursor() as cursor:
                cursor.execute(_QUEUE_GAUGES, params)
                rows = cursor.fetchall()
                cursor.execute(_AUDIT_GAUGES)
                unsealed, first_unsealed = cursor.fetchone()
                cursor.execute(_LAST_RETENTION)
                (last_retention,) = cursor.fetchone()
                cursor.execute(_DISABLED_WEBHOOKS)
                disabled_webhooks = cursor.fetchall()
        except DatabaseError:
            # The counters are still worth serving; the alerts see the database is down.
            logger.warning("metrics: the database gauges could not be read")
            yield GaugeMetricFamily(_UP, _UP_HELP, value=0)
            return
        yield GaugeMetricFamily(_UP, _UP_HELP, value=1)
        for name, ready, later, holding, leased, first in rows:
            waiting.add_metric([name], ready)
            delayed.add_metric([name], later)
            held.add_metric([name], holding)
            active.add_metric([name], leased)
            oldest.add_metric([name], _age(now, first))
        yield from (waiting, delayed, held, active, oldest)
        disabled = GaugeMetricFamily(
            "flashq_disabled_webhooks",
            "Webhooks now disabled (after WEBHOOK_MAX_FAILURES failed deliveries in a row)",
            labels=["queue"],
        )
        for name, count in disabled_webhooks:
            disabled.add_metric([name], count)
        yield disabled
        yield GaugeMetricFamily(
            "flashq_audit_unsealed_events", "Audit events not yet sealed", value=unsealed
        )
        yield GaugeMetricFamily(
            "flashq_audit_sealing_lag_seconds",
            "Age of the oldest unsealed audit event (0 when none)",
            value=_age(now, first_unsealed),
        )
        yield GaugeMetricFamily(
            "flashq_retention_last_run_timestamp_seconds",
            "When the scheduled retention run last succeeded (0: never)",
            value=last.timestamp() if (last := _moment(last_retention)) else 0.0,
        )


def exposition(accept: str | None = None) -> tuple[bytes, str]:
    """What to serve (in the format the scraper asks for: Prometheus text or
    OpenMetrics) and its content type: this server's counters (every worker's) and the
    database's gauges."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        # One process (runserver, tests): the default registry holds the counters.
        registry.register(_Default())
    registry.register(DatabaseCollector())
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


class _Default(Collector):
    def collect(self) -> Iterator[Any]:
        yield from REGISTRY.collect()


# -- the scheduler's counters ----------------------------------------------------------------


def serve_scheduler_metrics(port: int, address: str = "0.0.0.0") -> bool:  # noqa: S104
    """The scheduler (qcluster) changes jobs too (the lease sweeper, ttl expiry,
    retention) in its worker processes, which serve no HTTP: serve their counters (not the
    database gauges, which the app servers serve) on ``port``, summed over the processes
    through PROMETHEUS_MULTIPROC_DIR, which must be set before the process starts. Call
    before the cluster forks its workers. No token here: expose the port to monitoring
    only (deploy/k8s's NetworkPolicy)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        logger.error("scheduler metrics need PROMETHEUS_MULTIPROC_DIR; not serving them")
        return False
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):  # a previous run's processes
        stale.unlink()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    start_http_server(port, addr=address, registry=registry)
    logger.info("scheduler metrics on %s:%s/metrics", address, port)
    return True


# -- the view ------------------------------------------------------------------------------


def _refusal(
    request: HttpRequest, actor: Actor, status: int, detail: str, **why: str
) -> HttpResponse:
    """The refused scrape's answer, after its audit event (summarised once the address
    is throttled for failed authentications, as for any API call)."""
    code = {401: "not_authenticated", 403: "permission_denied", 429: "rate_limited"}[status]
    if why.pop("throttled", ""):
        record_throttled_refusal(actor=actor, action=Action.METRICS, status=status, details=why)
    else:
        audit_refusal(actor=actor, action=Action.METRICS, status=status, details=why)
    body = problem_body(status=status, code=code, title=detail, detail=detail)
    response = HttpResponse(json.dumps(body), status=status, content_type=CONTENT_TYPE)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="flashq"'
    return response


def _refuse_scrape(request: HttpRequest) -> HttpResponse | None:
    """None if the caller may scrape: from METRICS_ALLOWED_CIDRS, or with a token that
    holds ``metrics`` on ``*`` (from an address that token and ALLOWED_CIDRS accept)."""
    actor = request_actor(request, kind=ActorKind.ANONYMOUS)
    ip = actor.client_ip
    scrapers = tuple(settings.METRICS_ALLOWED_CIDRS)
    if scrapers and address_allowed(ip, scrapers):
        return None
    if not address_allowed(ip, tuple(settings.ALLOWED_CIDRS)):
        return _refusal(request, actor, 403, "Not from an allowed address.", network="outside")
    scheme, _, raw = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    try:
        if scheme.lower() != "bearer" or not raw.strip():
            raise TokenRefused("missing")
        principal = principal_for(raw.strip()[:512], ip=ip)
    except AuthThrottled:
        note_auth_failure(ip)
        return _refusal(request, actor, 429, "Too many failed authentications.", throttled="1")
    except TokenRefused as refused:
        note_auth_failure(ip)
        throttled = "" if count_auth_failure(ip).allowed else "1"
        detail = "Authentication credentials were missing or invalid."
        return _refusal(request, actor, 401, detail, auth=refused.reason, throttled=throttled)
    actor = request_actor(
        request, kind=ActorKind.TOKEN, name=principal.name, token_id=principal.token_id
    )
    if not address_allowed(ip, tuple(settings.ALLOWED_CIDRS), principal.networks):
        return _refusal(request, actor, 403, "Not from an allowed address.", network="outside")
    if not principal.allows(Verb.METRICS, WILDCARD):
        return _refusal(request, actor, 403, "This token may not read metrics.")
    return None


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    refused = _refuse_scrape(request)
    if refused is not None:
        return refused
    body, content_type = exposition(request.META.get("HTTP_ACCEPT"))
    return HttpResponse(body, content_type=content_type)
