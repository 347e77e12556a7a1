"""GET /metrics: who may scrape it, what it counts, and what it never shows."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client, override_settings
from prometheus_client import REGISTRY

from compliance.models import AuditEvent
from queues import services
from queues.models import Job, JobState, Webhook

from .personas import make_full_token
from .support import SETUP, Api, make_token, pull, push

pytestmark = pytest.mark.django_db


def _scrape(token: str | None = None, **extra: str) -> Any:
    headers: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return Client(HTTP_HOST="localhost").get("/metrics", **{**headers, **extra})


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _line(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in the exposition text."""
    wanted = name + (
        "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else ""
    )
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


# -- who may scrape ----------------------------------------------------------------------


def test_a_scrape_needs_a_token_with_the_metrics_verb() -> None:
    assert _scrape().status_code == 401
    everything = make_token("ops", "*=*,admin")  # * does not include metrics
    assert _scrape(everything).status_code == 403
    narrow = make_token("narrow", "jobs:*=metrics")  # metrics is granted on * only
    assert _scrape(narrow).status_code == 403
    scraper = make_token("prometheus", "*=metrics")
    answer = _scrape(scraper)
    assert answer.status_code == 200
    assert answer["Content-Type"].startswith("text/plain")
    refused = list(
        AuditEvent.objects.filter(action="metrics")
        .order_by("id")
        .values_list("action", "status", "actor")
    )
    assert refused == [
        ("metrics", 401, "anonymous"),
        ("metrics", 403, "token:ops"),
        ("metrics", 403, "token:narrow"),
    ]  # the allowed scrape is not an event


def test_a_refused_scrape_is_problem_json_and_counts_as_a_failed_authentication() -> None:
    answer = _scrape("fq_" + "A" * 12 + "_" + "B" * 49)
    assert answer.status_code == 401
    assert answer["Content-Type"] == "application/problem+json"
    assert answer["WWW-Authenticate"] == 'Bearer realm="flashq"'
    assert AuditEvent.objects.get(action="metrics").details["auth"] == "malformed"


@override_settings(METRICS_ALLOWED_CIDRS=["127.0.0.0/8"])
def test_prometheus_in_an_allowed_network_needs_no_token() -> None:
    assert _scrape().status_code == 200
    openmetrics = _scrape(HTTP_ACCEPT="application/openmetrics-text; version=1.0.0")
    assert openmetrics["Content-Type"].startswith("application/openmetrics-text")
    assert openmetrics.content.decode().rstrip().endswith("# EOF")


@override_settings(METRICS_ALLOWED_CIDRS=["10.0.0.0/8"])
def test_outside_the_allowed_network_a_token_is_still_needed() -> None:
    assert _scrape().status_code == 401


# -- what it counts --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_job_counters_follow_the_audit_trail() -> None:
    api = Api()
    full = make_full_token()
    before = {
        name: _sample(f"flashq_jobs_{name}_total", queue="m:q")
        for name in ("pushed", "completed", "failed", "retried")
    }
    for n in range(3):
        push(api, full, queue="m:q", data={"n": n}, max_attempts=2)
    jobs = pull(api, full, queue="m:q", count=3)
    acks = [{"id": job["id"], "lease_id": job["lease_id"]} for job in jobs[:1]]
    assert api.post("/jobs/ack", {"jobs": acks}, as_=full).status == 200
    # Repeated acks (a lost answer's retries) are answered again and complete nothing.
    assert api.post("/jobs/ack", {"jobs": acks}, as_=full).status == 200
    again = {"lease_id": jobs[0]["lease_id"]}
    assert api.post(f"/jobs/{jobs[0]['id']}/ack", again, as_=full).status == 200
    assert pull(api, full, queue="m:q", count=1, ack=acks) == []
    fail = {"lease_id": jobs[1]["lease_id"], "error": "boom"}
    assert api.post(f"/jobs/{jobs[1]['id']}/fail", fail, as_=full).status == 200  # retried
    fail = {"lease_id": jobs[2]["lease_id"], "error": "boom", "retry": False}
    assert api.post(f"/jobs/{jobs[2]['id']}/fail", fail, as_=full).status == 200  # failed
    after = {
        name: _sample(f"flashq_jobs_{name}_total", queue="m:q")
        for name in ("pushed", "completed", "failed", "retried")
    }
    assert {name: after[name] - before[name] for name in after} == {
        "pushed": 3,
        "completed": 1,
        "failed": 1,
        "retried": 1,
    }


def test_refusals_and_latency_are_counted_per_operation(api: Api, full: str) -> None:
    failures = _sample("flashq_auth_failures_total", reason="missing")
    denials = _sample("flashq_permission_denials_total")
    pushes = _sample("flashq_request_duration_seconds_count", operation="push", status="2xx")
    assert api.post("/queues/q/jobs", {"data": {}}, as_=None).status == 401
    reader = make_token("reader", "q=getJob")
    assert api.post("/queues/q/jobs", {"data": {}}, as_=reader).status == 403
    push(api, full, queue="q")
    assert _sample("flashq_auth_failures_total", reason="missing") == failures + 1
    assert _sample("flashq_permission_denials_total") == denials + 1
    after = _sample("flashq_request_duration_seconds_count", operation="push", status="2xx")
    assert after == pushes + 1


def test_queue_gauges_come_from_the_database(api: Api, full: str) -> None:
    push(api, full, queue="g:q", data={"n": 1})
    push(api, full, queue="g:q", data={"n": 2})
    push(api, full, queue="g:q", data={"n": 3}, delay=3_600_000)
    held = push(api, full, queue="g:q", data={"n": 4})["id"]
    Job.objects.filter(id=held).update(state=JobState.WAITING_CHILDREN)
    pull(api, full, queue="g:q", count=1)
    text = _scrape(make_token("prom", "*=metrics")).content.decode()
    assert _line(text, "flashq_jobs_waiting", queue="g:q") == 1
    assert _line(text, "flashq_jobs_delayed", queue="g:q") == 1
    assert _line(text, "flashq_jobs_waiting_children", queue="g:q") == 1
    assert _line(text, "flashq_jobs_active", queue="g:q") == 1
    assert (_line(text, "flashq_oldest_waiting_seconds", queue="g:q") or 0) >= 0
    assert (_line(text, "flashq_audit_unsealed_events") or 0) >= 4  # nothing sealed yet
    assert _line(text, "flashq_audit_sealing_lag_seconds") is not None
    assert _line(text, "flashq_retention_last_run_timestamp_seconds") == 0  # never ran


def test_disabled_webhooks_are_a_gauge_and_a_counter(
    django_capture_on_commit_callbacks: Any,
) -> None:
    url = "https://hooks.example.com/"
    for name in ("a", "b"):
        services.webhook_save(queue_name="g:w", name=name, url=url, events=["failed"], actor=SETUP)
    before = _sample("flashq_webhooks_disabled_total", queue="g:w")
    hook = Webhook.objects.get(name="a")
    with (
        override_settings(WEBHOOK_MAX_FAILURES=1, WEBHOOK_DISABLE_AFTER_SECONDS=0),
        django_capture_on_commit_callbacks(execute=True),
    ):
        services.webhook_delivered(webhook_id=hook.id, status=500, actor=SETUP)
    text = _scrape(make_token("prom", "*=metrics")).content.decode()
    assert _line(text, "flashq_disabled_webhooks", queue="g:w") == 1
    assert _sample("flashq_webhooks_disabled_total", queue="g:w") == before + 1


def test_it_never_shows_payloads_token_names_or_subjects(api: Api) -> None:
    producer = make_token("billing-producer-xyz", "*=*")
    push(
        api,
        producer,
        queue="p:q",
        data={"card_holder": "Very Secret Name"},
        subject="alice@x.example",
    )
    text = _scrape(make_token("prom", "*=metrics")).content.decode()
    for secret in ("Very Secret Name", "alice@x.example", "billing-producer-xyz", "card_holder"):
        assert secret not in text
    assert 'queue="p:q"' in text


def test_a_metrics_token_sees_no_queue_and_no_job(api: Api, full: str) -> None:
    """metrics is about no queue: a scraper's token lists none and learns of no job."""
    pushed = push(api, full, queue="hidden:q")
    scraper = make_token("prometheus", "*=metrics")
    assert api.get("/queues", as_=scraper).body == {"queues": []}
    assert api.get(f"/jobs/{pushed['id']}", as_=scraper).status == 404


def test_without_the_database_the_counters_are_still_served(monkeypatch: Any) -> None:
    from django.db import DatabaseError, connection

    from flashq_project import metrics

    def down(*args: Any, **kwargs: Any) -> None:
        raise DatabaseError("the database is down")

    monkeypatch.setattr(connection, "cursor", down)
    body, _ = metrics.exposition()
    text = body.decode()
    assert _line(text, "flashq_metrics_database_up") == 0
    assert "flashq_jobs_pushed" in text and "flashq_jobs_waiting{" not in text
