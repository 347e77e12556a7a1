"""AUDIT_CHAIN_KEY: required in production (also as _FILE), checked by manage.py check,
generated for local runs, rotatable with key ids; and the head anchors the sealer
writes outside the database (audit_seal --anchor-file, AUDIT_ANCHOR_FILE), which
audit_verify --anchor-file checks against."""

from __future__ import annotations

import json
from functools import partial
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from compliance import tasks
from compliance.audit import chain, verification
from compliance.audit.chainkeys import chain_keys
from compliance.models import AuditEvent
from security.encryption import generate_key

from .test_audit_chain import _events, _raw
from .test_settings_files import _production, _secret_files
from .test_tokens import _settings_import, _strong

K1 = f"k1:{generate_key()}"
K2 = f"k2:{generate_key()}"


# -- the setting ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("", "AUDIT_CHAIN_KEY is not set"),
        ("a1:c2hvcnQga2V5IG1hdGVyaWFs", "AUDIT_CHAIN_KEY entry 1 ('a1'): the key is 18 bytes"),
        ("no-colon", "AUDIT_CHAIN_KEY entry 1 must be keyid:base64key"),
    ],
)
def test_production_refuses_to_start_without_a_valid_chain_key(value: str, named: str) -> None:
    result = _settings_import(
        {**_strong(), "AUDIT_CHAIN_KEY": value}, "flashq_project.settings.production"
    )
    assert result.returncode != 0
    assert named in result.stderr
    assert "c2hvcnQga2V5IG1hdGVyaWFs" not in result.stderr


def test_the_chain_key_is_read_from_its_file_without_the_trailing_newline(
    tmp_path: Path,
) -> None:
    env = _secret_files(tmp_path)
    key = Path(env["AUDIT_CHAIN_KEY_FILE"]).read_text().strip()
    done = _production(
        env,
        "from compliance.audit.chainkeys import chain_keys; import base64; k = chain_keys(); "
        "print(k.current + ':' + base64.b64encode(k.keys[k.current]).decode())",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == key


def test_check_names_a_bad_chain_key_but_never_its_value(settings: Any) -> None:
    from django.core.checks import run_checks

    settings.AUDIT_CHAIN_KEY = "a1:c2hvcnQga2V5IG1hdGVyaWFs"
    [message] = [m for m in run_checks() if m.id == "flashq.E004"]
    assert "AUDIT_CHAIN_KEY entry 1" in message.msg
    assert "c2hvcnQga2V5IG1hdGVyaWFs" not in message.msg
    settings.AUDIT_CHAIN_KEY = K1
    assert not [m for m in run_checks() if m.id == "flashq.E004"]


def test_a_local_run_generates_its_chain_key_once_and_keeps_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flashq_project.settings import local
    from kernel.keylists import parse_key_list

    monkeypatch.setattr(local, "DEV_DIR", tmp_path)
    older = {"SECRET_KEY": "kept", "TOKEN_PEPPER": "kept-too", "ENCRYPTION_KEYS": "kept:x"}
    (tmp_path / "secrets.json").write_text(json.dumps(older))
    first = local._dev_secrets()
    assert {k: first[k] for k in older} == older
    keys = parse_key_list(first["AUDIT_CHAIN_KEY"], setting="AUDIT_CHAIN_KEY", purpose="x")
    assert list(keys) == ["devchain1"]
    assert local._dev_secrets() == first


# -- rotation ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_new_key_seals_the_old_one_still_verifies_and_a_dropped_one_is_named(
    settings: Any,
) -> None:
    settings.AUDIT_CHAIN_KEY = K1
    old = _events(2)
    chain.seal_all()
    settings.AUDIT_CHAIN_KEY = f"{K2},{K1}"
    assert chain_keys().current == "k2"
    new = _events(2)
    chain.seal_all()
    kinds = dict(AuditEvent.objects.values_list("id", "chain_key_id"))
    assert [kinds[e.pk] for e in old + new] == ["k1", "k1", "k2", "k2"]
    assert verification.verify().ok
    settings.AUDIT_CHAIN_KEY = K2  # k1 dropped while events still name it
    verdict = verification.verify()
    assert not verdict.ok and verdict.event_id == old[0].pk
    assert "key id 'k1' is not in AUDIT_CHAIN_KEY" in verdict.problem


@pytest.mark.django_db
def test_a_key_id_swapped_on_a_sealed_event_is_named(settings: Any) -> None:
    """The key id is covered by the MAC: relabelling a link does not verify."""
    settings.AUDIT_CHAIN_KEY = f"{K2},{K1}"
    events = _events(2)
    chain.seal_all()
    _raw("UPDATE compliance_auditevent SET chain_key_id = 'k1' WHERE id = %s", [events[1].pk])
    verdict = verification.verify()
    assert not verdict.ok and verdict.event_id == events[1].pk
    assert "hash mismatch" in verdict.problem


# -- anchors outside the database -------------------------------------------------------------


def _anchors(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _verify_file(path: Path) -> str:
    out = StringIO()
    call_command("audit_verify", "--anchor-file", str(path), stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_audit_seal_appends_one_anchor_per_batch_and_verify_checks_the_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    path = tmp_path / "anchors.jsonl"
    monkeypatch.setattr(chain, "seal_pending", partial(chain.seal_pending, limit=3))
    events = _events(5)
    with django_capture_on_commit_callbacks(execute=True):
        call_command("audit_seal", "--anchor-file", str(path), stdout=StringIO())
    lines = _anchors(path)
    assert [line["seq"] for line in lines] == [3, 5]
    head = AuditEvent.objects.get(seq=5)
    assert lines[-1]["hash"] == head.hash and lines[-1]["key_id"] == "chain1"
    assert head.sealed_at is not None and lines[-1]["time"] == head.sealed_at.isoformat()
    assert "up to the anchor at seq 5" in _verify_file(path)
    _raw("DELETE FROM compliance_auditevent WHERE id = %s", [events[4].pk])
    with pytest.raises(CommandError, match="the newest events were deleted"):
        _verify_file(path)


@pytest.mark.django_db
def test_the_scheduled_sealer_writes_to_audit_anchor_file(
    tmp_path: Path, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.AUDIT_ANCHOR_FILE = str(tmp_path / "anchors.jsonl")
    _events(2)
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.seal_audit() == 2
    [line] = _anchors(tmp_path / "anchors.jsonl")
    assert line["event"] == "audit.sealed" and line["seq"] == 2


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("content", "named"),
    [
        (None, "cannot read it"),
        ("\n", "holds no anchor"),
        ("{not json\n", "not JSON"),
        ('{"seq": 1}\n', "64 hex digits"),
        ('{"seq": "1", "hash": "' + "a" * 64 + '"}\n', "positive integer"),
    ],
)
def test_a_bad_anchor_file_is_refused(tmp_path: Path, content: str | None, named: str) -> None:
    path = tmp_path / "anchors.jsonl"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CommandError, match=named):
        _verify_file(path)
