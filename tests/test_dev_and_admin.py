from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from .personas import superuser_client
from .support import Api, push

pytestmark = pytest.mark.django_db


def test_dev_bootstrap_creates_working_credentials_once_and_reuses_them(
    tmp_path: Path, settings: object, api: Api
) -> None:
    settings.DEV_DIR = tmp_path  # type: ignore[attr-defined]
    first = call_command("dev_bootstrap", "--url", "http://127.0.0.1:9")
    stored = json.loads((tmp_path / "credentials.json").read_text())
    assert (tmp_path / "credentials.json").stat().st_mode & 0o077 == 0
    assert "http://127.0.0.1:9/api/docs/" in first and stored["token"] in first
    assert (
        call_command("dev_bootstrap")
        and json.loads((tmp_path / "credentials.json").read_text()) == stored
    )
    assert api.get("/queues/anything", as_=stored["token"]).status == 404  # admin verb: allowed
    client = Client()
    login = {"username": stored["username"], "password": stored["password"], "next": "/admin/"}
    assert client.post("/admin/login/", login).status_code == 302
    assert client.get("/admin/").status_code == 200


def test_dev_bootstrap_refuses_to_run_outside_local_settings() -> None:
    with pytest.raises(CommandError):
        call_command("dev_bootstrap")


@pytest.mark.parametrize(
    "url",
    [
        "/admin/",
        "/admin/queues/queue/",
        "/admin/queues/job/",
        "/admin/security/apitoken/",
        "/admin/compliance/auditevent/",
    ],
)
def test_admin_pages_render_for_a_superuser(api: Api, full: str, url: str) -> None:
    push(api, full)
    client = superuser_client()
    assert client.get(url).status_code == 200


def test_the_audit_trail_cannot_be_edited_or_deleted_in_the_admin(api: Api, full: str) -> None:
    from compliance.models import AuditEvent

    push(api, full)
    event = AuditEvent.objects.first()
    assert event is not None
    client = superuser_client()
    client.post(f"/admin/compliance/auditevent/{event.pk}/delete/", {"post": "yes"})
    assert AuditEvent.objects.filter(pk=event.pk).exists()
    assert client.get("/admin/compliance/auditevent/add/").status_code == 403
