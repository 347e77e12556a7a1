from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from security import tokens
from security.models import ApiToken

from .processes import production_secrets
from .support import Api, make_token, push


def test_a_token_has_prefix_public_id_256_bit_secret_and_checksum() -> None:
    raw, parts = tokens.generate()
    assert raw.startswith(f"fq_{parts.public_id}_{parts.secret}")
    assert len(parts.secret) * math.log2(62) >= 256
    assert tokens.parse(raw) == parts


def test_a_flipped_character_fails_the_checksum() -> None:
    raw, _ = tokens.generate()
    i = len(raw) - 10
    tampered = raw[:i] + ("A" if raw[i] != "A" else "B") + raw[i + 1 :]
    assert tokens.parse(tampered) is None


@pytest.mark.django_db
def test_only_an_hmac_of_the_secret_is_stored(api: Api) -> None:
    raw = make_token("t", "jobs:*=push")
    _, _, rest = raw.partition("_")
    secret = rest.partition("_")[2][: tokens.SECRET_LENGTH]
    token = ApiToken.objects.get(name="t")
    assert secret not in token.secret_hash
    assert token.secret_hash == tokens.hash_secret(secret, settings.TOKEN_PEPPER)


def _unauthenticated(api: Api, header_token: str | None) -> dict[str, object]:
    call = api.post("/queues/jobs:q/jobs", {"data": {}}, as_=header_token)
    assert call.status == 401
    assert call.headers["Content-Type"] == "application/problem+json"
    assert call.headers["WWW-Authenticate"].startswith("Bearer")
    return dict(call.body)


@pytest.mark.django_db
def test_every_kind_of_bad_token_gets_the_same_401(api: Api) -> None:
    good = make_token("good", "jobs:*=push")
    expired = make_token("expired", "jobs:*=push")
    ApiToken.objects.filter(name="expired").update(expires_at=timezone.now() - timedelta(seconds=1))
    revoked = make_token("revoked", "jobs:*=push")
    ApiToken.objects.filter(name="revoked").update(revoked_at=timezone.now())
    unknown, _ = tokens.generate()
    # Change the last character to one it certainly is not (a fixed "x" would leave the
    # token intact whenever it already ends in x: one run in 62).
    tampered = good[:-1] + ("x" if good[-1] != "x" else "y")
    wrong_secret = good[: 3 + tokens.PUBLIC_ID_LENGTH + 1] + tokens.generate()[1].secret
    wrong_secret += tokens.checksum(wrong_secret)
    bodies = [
        _unauthenticated(api, value)
        for value in (None, "garbage", tampered, unknown, wrong_secret, expired, revoked)
    ]
    assert all(body == bodies[0] for body in bodies)
    assert api.post("/queues/jobs:q/jobs", {"data": {}}, as_=good).status == 201


@pytest.mark.django_db
def test_a_bad_checksum_is_refused_before_any_database_work(api: Api) -> None:
    raw, _ = tokens.generate()
    bad = raw[:-1] + ("0" if raw[-1] != "0" else "1")
    with CaptureQueriesContext(connection) as queries:
        assert api.get("/queues", as_=bad).status == 401
    # No token work at all (the failure is still counted against the address).
    assert not [q for q in queries.captured_queries if "security_apitoken" in q["sql"]]
    with CaptureQueriesContext(connection) as queries:
        assert api.get("/queues", as_=raw).status == 401
    assert [q for q in queries.captured_queries if "security_apitoken" in q["sql"]]


@pytest.mark.django_db
def test_a_non_bearer_scheme_is_refused(api: Api) -> None:
    token = make_token("t", "jobs:*=push")
    response = api.client.get("/api/v1/queues", HTTP_AUTHORIZATION=f"Basic {token}")
    assert response.status_code == 401


@pytest.mark.django_db
def test_bootstrap_tokens_act_on_every_queue_but_not_as_admin(api: Api, settings: object) -> None:
    bootstrap = "b" * 40
    settings.AUTH_TOKENS = [bootstrap]  # type: ignore[attr-defined]
    job = push(api, bootstrap, queue="anything")
    assert api.get(f"/jobs/{job['id']}", as_=bootstrap).status == 200
    assert api.get("/queues/anything", as_=bootstrap).status == 403
    assert api.get("/queues", as_="c" * 40).status == 401


def _settings_import(env: dict[str, str], module: str) -> subprocess.CompletedProcess[str]:
    code = f"import django, os; os.environ['DJANGO_SETTINGS_MODULE']='{module}'; django.setup()"
    return subprocess.run(
        [sys.executable, "-c", code],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        cwd=settings.BASE_DIR,
        check=False,
    )


def test_a_short_bootstrap_token_is_refused_at_start_up() -> None:
    result = _settings_import({"AUTH_TOKENS": "short"}, "flashq_project.settings.test")
    assert result.returncode != 0
    assert "AUTH_TOKENS" in result.stderr
    assert "short" not in result.stderr.replace("AUTH_TOKENS", "")


def _strong() -> dict[str, str]:
    return {**production_secrets(), "DATABASE_URL": "sqlite:///:memory:"}


@pytest.mark.parametrize(
    ("weak", "named"),
    [
        ({"SECRET_KEY": ""}, "SECRET_KEY is not set"),
        ({"TOKEN_PEPPER": "p" * 40}, "TOKEN_PEPPER has too little entropy"),
        ({"SECRET_KEY": "k" * 60}, "SECRET_KEY has too little entropy"),
        ({"SECRET_KEY": "abcd" * 15}, "SECRET_KEY has too little entropy"),
        ({"TOKEN_PEPPER": "Xy7-q2"}, "TOKEN_PEPPER is shorter than 32"),
        ({"AUTH_TOKENS": "ab" * 20}, "AUTH_TOKENS entry 1 has too little entropy"),
        (
            {"SECRET_KEY": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"},
            "SECRET_KEY follows a pattern",
        ),
        ({"TOKEN_PEPPER": "0123456789abcdefghijklmnopqrstuv"}, "TOKEN_PEPPER follows a pattern"),
        ({"TOKEN_PEPPER": "q1w2e3r4t5y6u7i8" * 3}, "TOKEN_PEPPER follows a pattern"),
        ({"SECRET_KEY": "django-insecure-" + "Xk3" * 15}, "SECRET_KEY"),
    ],
)
def test_production_settings_refuse_to_start_with_weak_secrets(
    weak: dict[str, str], named: str
) -> None:
    env = {**_strong(), **weak}
    result = _settings_import(env, "flashq_project.settings.production")
    assert result.returncode != 0
    assert named in result.stderr
    for value in weak.values():
        if value:
            assert value not in result.stderr


def test_production_settings_start_with_strong_secrets() -> None:
    assert _settings_import(_strong(), "flashq_project.settings.production").returncode == 0


def test_check_deploy_reports_weak_secrets_by_name(settings: Any) -> None:
    from django.core.checks import run_checks

    settings.TOKEN_PEPPER = "p" * 40
    settings.AUTH_TOKENS = ["ab" * 20]
    messages = [m for m in run_checks(include_deployment_checks=True) if m.id == "flashq.E001"]
    assert [m.msg for m in messages] == [
        "TOKEN_PEPPER has too little entropy (under 128 bits: repeated characters?)",
        "AUTH_TOKENS entry 1 has too little entropy (under 128 bits: repeated characters?)",
    ]
    assert not [m for m in run_checks() if m.id == "flashq.E001"]  # deploy checks only


def test_secrets_are_read_from_name_file(tmp_path: object) -> None:
    from pathlib import Path

    strong = _strong()
    key_file, keyring_file = Path(str(tmp_path)) / "key", Path(str(tmp_path)) / "keyring"
    key_file.write_text(strong["SECRET_KEY"])
    keyring_file.write_text(strong["ENCRYPTION_KEYS"])
    env = {
        "SECRET_KEY_FILE": str(key_file),
        "TOKEN_PEPPER": strong["TOKEN_PEPPER"],
        "ENCRYPTION_KEYS_FILE": str(keyring_file),
        "AUDIT_CHAIN_KEY": strong["AUDIT_CHAIN_KEY"],
        "DATABASE_URL": strong["DATABASE_URL"],
    }
    assert _settings_import(env, "flashq_project.settings.production").returncode == 0


@pytest.mark.parametrize(
    ("keys", "named"),
    [
        ("", "ENCRYPTION_KEYS is not set"),
        ("k1:c2hvcnQga2V5IG1hdGVyaWFs", "ENCRYPTION_KEYS entry 1 ('k1'): the key is 18 bytes"),
    ],
)
def test_production_refuses_to_start_without_a_payload_key(keys: str, named: str) -> None:
    result = _settings_import(
        {**_strong(), "ENCRYPTION_KEYS": keys}, "flashq_project.settings.production"
    )
    assert result.returncode != 0
    assert named in result.stderr
    assert "c2hvcnQga2V5IG1hdGVyaWFs" not in result.stderr


def test_a_local_run_generates_its_payload_key_once_and_keeps_it(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also for a .flashq-dev from before encryption: the key is added, the rest kept."""
    import json

    from flashq_project.settings import local
    from security.encryption import parse_keyring

    monkeypatch.setattr(local, "DEV_DIR", tmp_path)
    older = {"SECRET_KEY": "kept-secret-key", "TOKEN_PEPPER": "kept-pepper"}
    (tmp_path / "secrets.json").write_text(json.dumps(older))
    first = local._dev_secrets()
    assert {k: first[k] for k in older} == older
    assert parse_keyring(first["ENCRYPTION_KEYS"]).primary == "dev1"
    assert local._dev_secrets() == first == json.loads((tmp_path / "secrets.json").read_text())
    assert (tmp_path / "secrets.json").stat().st_mode & 0o777 == 0o600


def test_check_reports_address_lists_that_do_not_parse(settings: Any) -> None:
    from django.core.checks import run_checks

    settings.TRUSTED_PROXIES = ["10.0.0.0/8", "nonsense"]
    settings.ALLOWED_CIDRS = ["10.0.0.0/33"]
    messages = [m.msg for m in run_checks() if m.id == "flashq.E002"]
    assert messages == [
        "TRUSTED_PROXIES entry 2 is not an address or CIDR",
        "ALLOWED_CIDRS entry 1 is not an address or CIDR",
    ]


@pytest.mark.django_db
def test_an_unknown_public_id_holding_a_card_number_reaches_the_trail_masked(api: Api) -> None:
    """Reported: an unauthenticated caller wrote a Luhn-valid Maestro-range number into
    the append-only trail as the public id of a well-formed but unknown token."""
    from compliance.models import AuditEvent

    from .support import clear_audit

    card = "500000000009"
    assert len(card) == tokens.PUBLIC_ID_LENGTH
    body = f"{tokens.PREFIX}{card}_{tokens.generate()[1].secret}"
    raw = body + tokens.checksum(body)
    assert tokens.parse(raw) is not None
    plain, parts = tokens.generate()
    clear_audit()
    assert api.get("/queues", as_=raw).status == 401
    assert api.get("/queues", as_=plain).status == 401
    masked, kept = AuditEvent.objects.order_by("id")
    assert (masked.details["auth"], masked.details["public_id"]) == ("unknown", "500000**0009")
    assert (kept.details["auth"], kept.details["public_id"]) == ("unknown", parts.public_id)
    assert card not in json.dumps(list(AuditEvent.objects.values()), default=str)
