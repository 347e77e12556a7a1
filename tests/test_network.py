"""Forwarded headers count only from TRUSTED_PROXIES; IPv4-mapped addresses are the
IPv4 address, for the audit record and for trust decisions alike."""

from __future__ import annotations

from typing import Any

import pytest

from compliance.models import AuditEvent

from .support import Api, clear_audit

pytestmark = pytest.mark.django_db


def _get(api: Api, token: str, **meta: str) -> Any:
    clear_audit()
    headers: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {token}", **meta}
    return api.client.get("/api/v1/queues", **headers)


def test_only_a_trusted_proxy_can_say_the_request_came_over_https(
    api: Api, full: str, settings: Any
) -> None:
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_SSL_REDIRECT = True
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    spoofed = _get(api, full, REMOTE_ADDR="198.51.100.7", HTTP_X_FORWARDED_PROTO="https")
    assert spoofed.status_code == 301  # still plain http: sent to https
    proxied = _get(api, full, REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_PROTO="https")
    assert proxied.status_code == 200
    mapped = _get(api, full, REMOTE_ADDR="::ffff:10.0.0.2", HTTP_X_FORWARDED_PROTO="https")
    assert mapped.status_code == 200


@pytest.mark.parametrize(
    ("remote", "forwarded", "trusted", "recorded"),
    [
        ("::ffff:198.51.100.7", "", [], "198.51.100.7"),
        ("198.51.100.7", "6.6.6.6", [], "198.51.100.7"),
        ("::ffff:10.0.0.2", "::ffff:203.0.113.9", ["10.0.0.0/8"], "203.0.113.9"),
        ("10.0.0.2", "203.0.113.9, 10.0.0.3", ["10.0.0.0/8"], "203.0.113.9"),
        ("10.0.0.2", "not-an-ip", ["10.0.0.0/8"], "10.0.0.2"),
        ("fe80::1%eth0", "", [], "fe80::1"),
    ],
)
def test_the_recorded_client_ip(
    api: Api,
    full: str,
    settings: Any,
    remote: str,
    forwarded: str,
    trusted: list[str],
    recorded: str,
) -> None:
    settings.TRUSTED_PROXIES = trusted
    assert _get(api, full, REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded).status_code == 200
    assert AuditEvent.objects.get().client_ip == recorded


@pytest.mark.parametrize("path", ["/api/v1/nope", "/api/v1/queues/", "/api/v2/queues"])
def test_an_unknown_api_route_is_problem_json_with_one_event(
    api: Api, full: str, path: str
) -> None:
    clear_audit()
    response = api.client.post(
        path + "?alice@example.com", HTTP_AUTHORIZATION=f"Bearer {full}", REMOTE_ADDR="192.0.2.5"
    )
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    event = AuditEvent.objects.get()
    assert (event.action, event.status, event.actor, event.client_ip) == (
        "unknownRoute",
        404,
        "token:full",
        "192.0.2.5",
    )
    assert event.details == {"method": "POST"}
    clear_audit()
    api.client.get(path, HTTP_AUTHORIZATION="Bearer fq_nonsense")
    assert AuditEvent.objects.get().details == {"method": "GET", "auth": "malformed"}


def _push_from(api: Api, token: str, remote: str, **meta: str) -> int:
    headers: dict[str, Any] = {
        "HTTP_AUTHORIZATION": f"Bearer {token}",
        "REMOTE_ADDR": remote,
        **meta,
    }
    response = api.client.post(
        "/api/v1/queues/jobs:q/jobs", '{"data": {}}', content_type="application/json", **headers
    )
    return int(response.status_code)


def test_a_token_with_an_allow_list_is_refused_from_outside_it(api: Api, settings: Any) -> None:
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command(
        "create_token", "svc", "--allow", "jobs:*=push", "--cidr", "10.20.1.2/16", stdout=out
    )
    raw = out.getvalue().strip().splitlines()[-1]
    assert _push_from(api, raw, "10.20.9.9") == 201
    assert _push_from(api, raw, "::ffff:10.20.9.9") == 201
    clear_audit()
    assert _push_from(api, raw, "198.51.100.7") == 403
    event = AuditEvent.objects.get()
    assert (event.status, event.client_ip, event.actor) == (403, "198.51.100.7", "token:svc")
    assert event.details["network"] == "outside the allowed addresses"
    # A forwarded address counts only through a trusted proxy.
    spoofed = {"HTTP_X_FORWARDED_FOR": "10.20.9.9"}
    assert _push_from(api, raw, "198.51.100.7", **spoofed) == 403
    settings.TRUSTED_PROXIES = ["192.0.2.0/24"]
    assert _push_from(api, raw, "192.0.2.1", **spoofed) == 201
    assert _push_from(api, raw, "192.0.2.1", HTTP_X_FORWARDED_FOR="198.51.100.7") == 403


def test_the_global_allow_list_binds_every_token(api: Api, full: str, settings: Any) -> None:
    bootstrap = "Zq8-" + "x1Y2z3W4v5U6t7S8r9Q0p" + "K3m9"
    settings.AUTH_TOKENS = [bootstrap]
    settings.ALLOWED_CIDRS = ["203.0.113.0/24"]
    for token in (full, bootstrap):
        assert _push_from(api, token, "203.0.113.50") == 201
        assert _push_from(api, token, "198.51.100.7") == 403


def test_bad_cidrs_are_refused_where_they_are_stored() -> None:
    from django.core.exceptions import ValidationError
    from django.core.management import call_command
    from django.core.management.base import CommandError

    from security.models import ApiToken

    with pytest.raises(CommandError, match="not a CIDR"):
        call_command("create_token", "svc", "--allow", "q=push", "--cidr", "10.0.0.0/33")
    assert not ApiToken.objects.exists()
    call_command("create_token", "svc", "--allow", "q=push")
    token = ApiToken.objects.get()
    for bad in (["banana"], "10.0.0.0/8", [8]):
        token.allowed_cidrs = bad
        with pytest.raises(ValidationError):
            token.full_clean()


def test_outside_the_global_allow_list_no_token_is_even_looked_at(
    api: Api, full: str, settings: Any
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    settings.ALLOWED_CIDRS = ["203.0.113.0/24"]
    with CaptureQueriesContext(connection) as queries:
        good = _push_from(api, full, "198.51.100.7")
        bad = _push_from(api, "fq_wrong", "198.51.100.7")
    assert good == bad == 403  # a stolen token and a wrong one look the same from outside
    assert not [q for q in queries.captured_queries if "security_apitoken" in q["sql"]]


def test_a_call_refused_for_its_address_does_not_count_as_the_token_s_last_use(
    api: Api,
) -> None:
    from io import StringIO

    from django.core.management import call_command

    from security.models import ApiToken

    out = StringIO()
    call_command(
        "create_token", "svc", "--allow", "jobs:*=push", "--cidr", "10.0.0.0/8", stdout=out
    )
    raw = out.getvalue().strip().splitlines()[-1]
    assert _push_from(api, raw, "198.51.100.7") == 403
    assert ApiToken.objects.get().last_used_at is None
    assert _push_from(api, raw, "10.1.1.1") == 201
    assert ApiToken.objects.get().last_used_ip == "10.1.1.1"


def test_the_client_ip_is_worked_out_once_per_request_and_again_if_a_header_changes(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.test import RequestFactory

    from kernel import clientip

    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    worked: list[str | None] = []
    real = clientip._client_ip

    def counted(request: Any) -> str | None:
        worked.append(real(request))
        return worked[-1]

    monkeypatch.setattr(clientip, "_client_ip", counted)
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert [clientip.client_ip(request) for _ in range(5)] == ["203.0.113.9"] * 5
    assert len(worked) == 1
    # A header rewritten after the first answer (a middleware, a test) is not ignored.
    request.META["HTTP_X_FORWARDED_FOR"] = "198.51.100.4"
    assert clientip.client_ip(request) == "198.51.100.4"
    request.META["REMOTE_ADDR"] = "192.0.2.1"  # not a trusted proxy: its header is ignored
    assert clientip.client_ip(request) == "192.0.2.1"
    assert len(worked) == 3
