"""The admin's forms and labels read as plain words: no literal ``null`` in an empty
JSON field (and an empty box saves None), "API tokens", "JSON schema", "PII fields",
"Allowed addresses"; a new token's expiry prefilled (TOKEN_DEFAULT_LIFETIME_DAYS); no
creation time on a form for something not yet made; times shown with seconds."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from queues.models import Queue
from security.models import ApiToken
from security.services import token_create

from .personas import StaffClient
from .support import SETUP

pytestmark = pytest.mark.django_db
SECONDS = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


def _textarea(page: str, name: str) -> str:
    [value] = re.findall(rf'<textarea name="{name}"[^>]*>\s*(.*?)</textarea>', page, re.S)
    return str(value).strip()


def _labels(page: str) -> set[str]:
    return {
        re.sub(r"<[^>]+>", "", label).strip()
        for label in re.findall(r"<label[^>]*>(.*?)</label>", page, re.S)
    }


def test_an_empty_json_field_is_an_empty_box_and_saves_none(superuser: StaffClient) -> None:
    add = superuser.get("/admin/queues/queue/add/").content.decode()
    assert _textarea(add, "json_schema") == "" and _textarea(add, "card_allowlist") == ""
    assert "null" not in add
    queue = Queue.objects.create(name="mail")
    url = f"/admin/queues/queue/{queue.pk}/change/"
    page = superuser.get(url).content.decode()
    assert _textarea(page, "json_schema") == "" and "null" not in page
    form = {
        "subject_path": "userId",
        "json_schema": "",
        "sensitive_fields": '["ssn"]',
        "pii_fields": "[]",
        "card_allowlist": "",
        "group_concurrency": "1",
        "_save": "Save",
    }
    assert superuser.post(url, form).status_code == 302
    queue.refresh_from_db()
    assert queue.json_schema is None and queue.card_allowlist is None
    assert queue.sensitive_fields == ["ssn"]


def test_labels_are_plain_words(superuser: StaffClient) -> None:
    queue = _labels(superuser.get("/admin/queues/queue/add/").content.decode())
    assert {"JSON schema:", "PII fields:", "Card allowlist:"} <= queue
    assert {"Rate limit (jobs):", "Rate limit period (ms):", "Concurrency limit:"} <= queue
    token = superuser.get("/admin/security/apitoken/add/").content.decode()
    assert "Allowed addresses:" in _labels(token)
    assert "Add API token" in token and "Allowed cidrs" not in token
    index = superuser.get("/admin/").content.decode()
    assert ">API tokens<" in index and "Api tokens" not in index
    for page in (queue, _labels(token)):
        assert not {label for label in page if re.search(r"Json|Pii|cidrs|Api ", label)}


def test_a_new_token_s_expiry_is_prefilled(superuser: StaffClient) -> None:
    page = superuser.get("/admin/security/apitoken/add/").content.decode()
    [day] = re.findall(r'name="expires_at_0"[^>]*value="([^"]+)"', page) or re.findall(
        r'value="([^"]+)"[^>]*name="expires_at_0"', page
    )
    [time] = re.findall(r'name="expires_at_1"[^>]*value="([^"]+)"', page) or re.findall(
        r'value="([^"]+)"[^>]*name="expires_at_1"', page
    )
    shown = datetime.fromisoformat(f"{day}T{time}+00:00")
    expected = timezone.now() + timedelta(days=settings.TOKEN_DEFAULT_LIFETIME_DAYS)
    assert abs(shown - expected) < timedelta(minutes=1)
    assert re.fullmatch(r"\d\d:\d\d:\d\d", time)
    assert f"after {settings.TOKEN_DEFAULT_LIFETIME_DAYS} days" in page
    assert "TOKEN_MAX_LIFETIME_DAYS" not in page


def test_an_add_form_shows_no_creation_time(superuser: StaffClient) -> None:
    for url in ("/admin/security/apitoken/add/", "/admin/queues/queue/add/"):
        page = superuser.get(url).content.decode()
        assert "Created at" not in page and "Public ID" not in page, url
        assert "Last used" not in page and "Revoked at" not in page, url
    token, _ = token_create(name="svc", rules=[], actor=SETUP)
    page = superuser.get(f"/admin/security/apitoken/{token.pk}/change/").content.decode()
    assert "Created at" in page and "Public ID" in page


def test_times_show_seconds_on_lists_and_pages(superuser: StaffClient) -> None:
    token, _ = token_create(name="svc", rules=[], actor=SETUP)
    created = timezone.localtime(ApiToken.objects.get(pk=token.pk).created_at)
    stamp = created.strftime("%Y-%m-%d %H:%M:%S")
    listing = superuser.get("/admin/security/apitoken/").content.decode()
    assert stamp in listing
    page = superuser.get(f"/admin/security/apitoken/{token.pk}/change/").content.decode()
    assert stamp in page
    Queue.objects.create(name="mail")
    assert re.search(SECONDS, superuser.get("/admin/queues/queue/").content.decode())
    assert not re.search(r"\d{1,2}:\d\d [ap]\.m\.", listing)
