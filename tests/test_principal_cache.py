"""The per-process principal cache (security.authentication): a token let in is
remembered for PRINCIPAL_CACHE_SECONDS, never for a wrong secret or past its expiry,
and forgotten when a token or rule changes in this process."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from compliance.audit import Actor
from security import authentication, tokens
from security.authentication import TokenRefused, principal_for
from security.models import ApiToken
from security.services import token_revoke

from .support import Api, make_token

pytestmark = pytest.mark.django_db

ADMIN = Actor.command("test")


@pytest.fixture(autouse=True)
def cache_on() -> Iterator[None]:
    authentication.forget_principals()
    authentication._failed_recently.clear()  # other tests' failures from 127.0.0.1
    with override_settings(PRINCIPAL_CACHE_SECONDS=1.0):
        yield
    authentication.forget_principals()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> dict[str, float]:
    """The cache's monotonic clock, moved by hand."""
    now = {"t": 1000.0}
    monkeypatch.setattr("security.authentication.time.monotonic", lambda: now["t"])
    return now


def test_a_second_call_within_the_cache_time_skips_the_database(
    django_assert_num_queries: Any,
) -> None:
    raw = make_token("svc", "jobs:*=push")
    first = principal_for(raw, ip="10.0.0.1")
    with django_assert_num_queries(0):
        again = principal_for(raw, ip="10.0.0.1")
    assert again == first and again.allows("push", "jobs:a")  # type: ignore[arg-type]


def test_a_wrong_secret_for_a_remembered_token_is_still_refused() -> None:
    raw = make_token("svc", "jobs:*=push")
    principal_for(raw)
    parts = tokens.parse(raw)
    assert parts is not None
    # The remembered public id with another secret, checksum and all: a real guess.
    body = f"{tokens.PREFIX}{parts.public_id}_{'A' * tokens.SECRET_LENGTH}"
    with pytest.raises(TokenRefused) as refused:
        principal_for(body + tokens.checksum(body))
    assert refused.value.reason == "bad_secret"


def test_a_revocation_in_this_process_is_seen_at_once(
    django_capture_on_commit_callbacks: Any,
) -> None:
    raw = make_token("svc", "jobs:*=push")
    principal_for(raw)
    with django_capture_on_commit_callbacks(execute=True):
        token_revoke(name="svc", actor=ADMIN)
    with pytest.raises(TokenRefused) as refused:
        principal_for(raw)
    assert refused.value.reason == "revoked"


def test_a_change_made_elsewhere_is_seen_once_the_cache_time_has_passed(
    clock: dict[str, float],
) -> None:
    raw = make_token("svc", "jobs:*=push")
    principal_for(raw)
    # Another app server revokes it: no signal reaches this process.
    ApiToken.objects.filter(name="svc").update(revoked_at=timezone.now())
    clock["t"] += 0.9
    principal_for(raw)  # still remembered, for at most the cache time
    clock["t"] += 0.1
    with pytest.raises(TokenRefused) as refused:
        principal_for(raw)
    assert refused.value.reason == "revoked"


def test_a_remembered_token_is_refused_from_its_expiry(
    monkeypatch: pytest.MonkeyPatch, clock: dict[str, float]
) -> None:
    raw = make_token("svc", "jobs:*=push")
    expiry = timezone.now() + timedelta(minutes=5)
    ApiToken.objects.filter(name="svc").update(expires_at=expiry)
    principal_for(raw)
    monkeypatch.setattr("security.authentication.timezone.now", lambda: expiry)
    with pytest.raises(TokenRefused) as refused:
        principal_for(raw)
    assert refused.value.reason == "expired"


def test_with_no_cache_time_every_call_reads_the_database(
    django_assert_num_queries: Any,
) -> None:
    raw = make_token("svc", "jobs:*=push")
    with override_settings(PRINCIPAL_CACHE_SECONDS=0):
        principal_for(raw)
        with django_assert_num_queries(1):
            principal_for(raw)


def test_an_address_that_just_failed_to_authenticate_skips_the_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Like a throttled address, it has every token checked against the database."""
    raw = make_token("svc", "jobs:*=push")
    api = Api()
    assert api.get("/me", as_=raw).status == 200  # remembered
    lookups: list[str] = []
    real = authentication._token_rows

    def counted(public_id: str, failure_key: str) -> Any:
        lookups.append(public_id)
        return real(public_id, failure_key)

    monkeypatch.setattr(authentication, "_token_rows", counted)
    assert api.get("/me", as_=raw).status == 200
    assert lookups == []  # served from the cache
    assert api.get("/me", as_="fq_" + "A" * 12 + "_" + "B" * 49).status == 401
    assert api.get("/me", as_=raw).status == 200
    assert len(lookups) == 1  # the failure made this address look the token up again


def test_a_change_committed_during_a_lookup_is_not_remembered_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = make_token("svc", "jobs:*=push")
    real = authentication._token_rows

    def revoked_meanwhile(public_id: str, failure_key: str) -> Any:
        rows = real(public_id, failure_key)  # read before the change
        authentication.forget_principals()  # the change commits in another thread
        return rows

    monkeypatch.setattr(authentication, "_token_rows", revoked_meanwhile)
    principal_for(raw)
    assert authentication._remembered == {}


def test_the_cache_entry_does_not_show_the_digest() -> None:
    raw = make_token("svc", "jobs:*=push")
    principal_for(raw)
    [entry] = authentication._remembered.values()
    assert entry.digest not in repr(entry)
