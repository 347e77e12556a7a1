"""Rate limits: per token, and per client address for failed authentication. The state
lives in the database and each decision is one statement, so limits hold in total
across processes (proved on PostgreSQL with several processes)."""

from __future__ import annotations

import multiprocessing
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

from compliance.models import AuditEvent
from kernel.ratelimit import Rate, rate_take
from security.models import ApiToken

from .support import Api, clear_audit, make_token, postgres_only

pytestmark = pytest.mark.django_db


def _token(name: str, *extra: str) -> str:
    out = StringIO()
    call_command("create_token", name, "--allow", "*=*", *extra, stdout=out)
    return out.getvalue().strip().splitlines()[-1]


def _list(api: Api, token: str, ip: str = "127.0.0.1") -> Any:
    return api.client.get("/api/v1/queues", HTTP_AUTHORIZATION=f"Bearer {token}", REMOTE_ADDR=ip)


@pytest.mark.parametrize(
    ("text", "limit", "period"),
    [("100/60s", 100, 60), ("5000/1h", 5000, 3600), ("20/m", 20, 60), ("1/2d", 1, 172800)],
)
def test_rates_parse(text: str, limit: int, period: float) -> None:
    assert Rate.parse(text) == Rate(limit, period)


@pytest.mark.parametrize("text", ["", "0/60s", "100", "100/0s", "-1/60s", "100/60y", "1e3/s"])
def test_bad_rates_are_refused_where_they_are_stored(text: str) -> None:
    with pytest.raises(ValueError):
        Rate.parse(text)
    if text:
        with pytest.raises(CommandError):
            _token("svc", "--rate", text)
        assert not ApiToken.objects.exists()


def test_a_token_over_its_rate_gets_429_with_retry_after_and_ratelimit_headers(
    api: Api,
) -> None:
    limited = _token("svc", "--rate", "3/60s")
    other = make_token("other", "*=*")
    remaining = []
    for _ in range(3):
        response = _list(api, limited)
        assert response.status_code == 200
        assert response["RateLimit-Limit"] == "3"
        remaining.append(int(response["RateLimit-Remaining"]))
    assert remaining == [2, 1, 0]
    clear_audit()
    refused = _list(api, limited)
    assert refused.status_code == 429
    assert refused["Content-Type"] == "application/problem+json"
    assert refused.json()["code"] == "rate_limited"
    assert 1 <= int(refused["Retry-After"]) <= 21  # one request every 20 s
    assert refused["RateLimit-Remaining"] == "0"
    event = AuditEvent.objects.get()
    assert (event.status, event.outcome, event.actor) == (429, "denied", "token:svc")
    assert _list(api, other).status_code == 200  # limits are per token


def test_failed_authentications_throttle_the_address_before_any_token_work(
    api: Api, settings: Any
) -> None:
    settings.AUTH_FAILURE_RATE = "3/60s"
    good = make_token("good", "*=*")
    for _ in range(3):
        assert _list(api, "fq_wrong", ip="198.51.100.7").status_code == 401
    throttled = _list(api, "fq_wrong", ip="198.51.100.7")
    assert throttled.status_code == 429 and int(throttled["Retry-After"]) >= 1
    # Even the right token gets nothing from that address until the limit refills: its
    # secret is not compared and its last use is not written.
    ApiToken.objects.filter(name="good").update(last_used_at=None)
    assert _list(api, good, ip="198.51.100.7").status_code == 429
    assert ApiToken.objects.get(name="good").last_used_at is None
    assert _list(api, good, ip="203.0.113.1").status_code == 200  # other addresses: fine


def test_a_throttled_flood_leaves_a_bounded_summary_in_the_trail(api: Api, settings: Any) -> None:
    settings.AUTH_FAILURE_RATE = "2/60s"
    for _ in range(2):
        _list(api, "fq_wrong", ip="198.51.100.9")
    clear_audit()
    for _ in range(20):
        assert _list(api, "fq_wrong", ip="198.51.100.9").status_code == 429
    events = list(AuditEvent.objects.order_by("id"))
    # The 1st, 2nd, 4th, 8th and 16th refusal of the window: 5 events for 20 requests.
    assert [event.details["throttled"] for event in events] == ["1", "2", "4", "8", "16"]
    assert {(event.status, event.client_ip) for event in events} == {(429, "198.51.100.9")}


def _take(key: str, rate: Rate, tries: int, results: Any) -> None:
    connections.close_all()  # a fresh connection per process, never the parent's
    results.put(sum(rate_take(key=key, rate=rate).allowed for _ in range(tries)))
    connections.close_all()


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_limit_holds_in_total_across_processes() -> None:
    rate = Rate(50, 3600.0)  # no refill to speak of during the test
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    connections.close_all()
    workers = [
        context.Process(target=_take, args=("token:shared", rate, 40, results)) for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    allowed = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    assert sum(allowed) == 50  # 160 tries, 4 processes, exactly the limit


def test_unknown_routes_count_as_failed_authentication_and_floods_are_summarised(
    api: Api, settings: Any
) -> None:
    settings.AUTH_FAILURE_RATE = "3/60s"
    good = make_token("good", "*=*")
    clear_audit()
    statuses = {
        api.client.get(f"/api/v1/nope{n}", REMOTE_ADDR="198.51.100.8").status_code
        for n in range(40)
    }
    assert statuses == {404}
    # 3 failures recorded one by one, then 37 throttled ones summarised (1, 2, 4, 8, 16, 32).
    assert AuditEvent.objects.count() == 3 + 6
    # A valid token from the throttled address: still a plain 404, never a 500.
    response = api.client.get(
        "/api/v1/nope", HTTP_AUTHORIZATION=f"Bearer {good}", REMOTE_ADDR="198.51.100.8"
    )
    assert response.status_code == 404


def test_a_bootstrap_token_from_a_throttled_address_learns_nothing(api: Api, settings: Any) -> None:
    settings.AUTH_FAILURE_RATE = "2/60s"
    bootstrap = "Zq8-x1Y2z3W4v5U6t7S8r9Q0pK3m9wQ"
    settings.AUTH_TOKENS = [bootstrap]
    for _ in range(2):
        assert _list(api, "not-the-secret", ip="198.51.100.3").status_code == 401
    assert _list(api, bootstrap, ip="198.51.100.3").status_code == 429
    assert _list(api, bootstrap, ip="198.51.100.4").status_code == 200
