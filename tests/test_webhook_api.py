"""The webhook routes: PUT (create or replace), GET, list, DELETE and rotate-secret. The
secret is answered once (on create, on rotation) and appears nowhere else: not in GET
answers, audit events, logs or errors. Bad input is a 400 naming the field, and nothing
changes."""

from __future__ import annotations

import json
import logging

import pytest

from compliance.models import AuditEvent
from queues.models import Webhook

from .support import Api, Call, clear_audit, make_token

pytestmark = pytest.mark.django_db

PREFIX = "/queues/jobs:q/webhooks"
GOOD = {"url": "https://hooks.example.com/flashq", "events": ["pushed", "completed"]}


@pytest.fixture
def admin() -> str:
    return make_token("hooks-admin", "jobs:*=admin")


def _put(api: Api, token: str, body: object, name: str = "h") -> Call:
    return api.request("PUT", f"{PREFIX}/{name}", body, as_=token)


def test_a_put_creates_a_webhook_and_answers_its_secret_once(
    api: Api, admin: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    clear_audit()
    created = _put(api, admin, GOOD)
    assert created.status == 201, created.body
    secret = created.body["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    assert created.body["url"] == GOOD["url"] and created.body["events"] == GOOD["events"]
    assert created.body["enabled"] is True

    read = api.get(f"{PREFIX}/h", as_=admin)
    listed = api.get(PREFIX, as_=admin)
    replaced = _put(api, admin, {**GOOD, "events": ["failed"]})
    assert (read.status, listed.status, replaced.status) == (200, 200, 200)
    assert [w["name"] for w in listed.body["webhooks"]] == ["h"]
    assert replaced.body["events"] == ["failed"]
    for answer in (read, listed, replaced):
        assert "secret" not in json.dumps(answer.body)
        assert secret not in json.dumps(answer.body)
    # A replace keeps the secret.
    assert Webhook.objects.get().secret == secret
    # The secret is nowhere in the trail or the logs.
    events = list(AuditEvent.objects.order_by("id").values_list("action", "details"))
    assert [action for action, _ in events] == [
        "webhook.save",
        "getWebhook",
        "getWebhooks",
        "webhook.save",
    ]
    assert secret not in json.dumps([details for _, details in events])
    assert events[0][1]["host"] == "hooks.example.com"
    assert "/flashq" not in json.dumps(events[0][1])
    assert secret not in caplog.text


def test_a_rotation_answers_a_new_secret_once_and_keeps_it(api: Api, admin: str) -> None:
    first = _put(api, admin, GOOD).body["secret"]
    clear_audit()
    rotated = api.post(f"{PREFIX}/h/rotate-secret", {"reason": "leaked"}, as_=admin)
    assert rotated.status == 200, rotated.body
    second = rotated.body["secret"]
    assert second != first and Webhook.objects.get().secret == second
    [event] = AuditEvent.objects.all()
    assert (event.action, event.details) == (
        "webhook.rotateSecret",
        {"name": "h", "reason": "leaked"},
    )
    assert "secret" not in json.dumps(api.get(f"{PREFIX}/h", as_=admin).body)


def test_the_secret_is_sealed_at_rest(api: Api, admin: str) -> None:
    secret = _put(api, admin, GOOD).body["secret"]
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM queues_webhook")
        [(stored,)] = cursor.fetchall()
    assert secret.encode() not in bytes(stored)


BAD = [
    ({**GOOD, "url": "http://hooks.example.com/"}, "/url"),
    ({**GOOD, "url": "https://user:pw@hooks.example.com/"}, "/url"),
    ({**GOOD, "url": "https://hooks.example.com:22/"}, "/url"),
    ({**GOOD, "url": "https://hooks.example.com:65558/"}, "/url"),  # 22, wrapped
    ({**GOOD, "url": "https://hooks.example.com:0/"}, "/url"),
    ({**GOOD, "url": "https://127.0.0.1/"}, "/url"),
    ({**GOOD, "url": "https://[::1]/"}, "/url"),
    ({**GOOD, "url": "https://169.254.169.254/latest/meta-data"}, "/url"),
    ({**GOOD, "url": "https://10.0.0.1/"}, "/url"),
    ({**GOOD, "url": "https://localhost/"}, "/url"),
    ({**GOOD, "url": "not a url"}, "/url"),
    ({**GOOD, "url": 5}, "/url"),
    ({**GOOD, "events": []}, "/events"),
    ({**GOOD, "events": ["pushed", "exploded"]}, "/events/1"),
    ({**GOOD, "events": ["reset"]}, "/events/0"),
    ({**GOOD, "events": ["pushed", "pushed"]}, "/events"),
    ({**GOOD, "secret": "whsec_mine"}, "/secret"),
    ({"events": ["pushed"]}, "/url"),
]


@pytest.mark.parametrize(("body", "path"), BAD)
def test_bad_input_is_a_400_naming_the_field_and_changes_nothing(
    api: Api, admin: str, body: dict[str, object], path: str
) -> None:
    _put(api, admin, GOOD)
    before = list(Webhook.objects.values_list("url", "events"))
    clear_audit()
    call = _put(api, admin, body)
    assert call.status == 400, call.body
    assert call.headers["Content-Type"] == "application/problem+json"
    assert path in [error["path"] for error in call.body["errors"]], call.body
    assert list(Webhook.objects.values_list("url", "events")) == before
    [event] = AuditEvent.objects.all()
    assert (event.action, event.status) == ("webhook.save", 400)


def test_a_put_re_enables_a_disabled_webhook(api: Api, admin: str) -> None:
    _put(api, admin, GOOD)
    Webhook.objects.update(enabled=False, consecutive_failures=20)
    again = _put(api, admin, GOOD)
    assert again.status == 200 and again.body["enabled"] is True
    assert again.body["consecutive_failures"] == 0
    saved = AuditEvent.objects.filter(action="webhook.save").order_by("id").last()
    assert saved is not None and saved.details["reenabled"] is True


def test_delete_and_unknown_names(api: Api, admin: str) -> None:
    _put(api, admin, GOOD)
    assert api.request("DELETE", f"{PREFIX}/h", as_=admin).status == 204
    assert not Webhook.objects.exists()
    assert api.get(f"{PREFIX}/h", as_=admin).status == 404
    assert api.request("DELETE", f"{PREFIX}/h", as_=admin).status == 404
    assert api.post(f"{PREFIX}/h/rotate-secret", as_=admin).status == 404
    assert api.get(f"{PREFIX}/-bad", as_=admin).status == 400


def test_webhooks_need_the_admin_verb(api: Api) -> None:
    everything_else = make_token("all-but-admin", "jobs:*=*")
    assert _put(api, everything_else, GOOD).status == 403
    assert api.get(PREFIX, as_=everything_else).status == 403
    assert not Webhook.objects.exists()


def test_the_schema_shows_the_secret_only_where_it_is_answered(api: Api) -> None:
    response = api.client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    schema = response.json()
    components = schema["components"]["schemas"]

    def shape(path: str, method: str, status: str) -> set[str]:
        ref = schema["paths"][path][method]["responses"][status]["content"]["application/json"]
        name = ref["schema"]["$ref"].rsplit("/", 1)[1]
        return set(components[name]["properties"])

    one = "/api/v1/queues/{queue}/webhooks/{name}"
    assert "secret" in shape(one, "put", "201")
    assert "secret" in shape(f"{one}/rotate-secret", "post", "200")
    assert "secret" not in shape(one, "put", "200")
    assert "secret" not in shape(one, "get", "200")
    request = schema["paths"][one]["put"]["requestBody"]["content"]["application/json"]
    body = components[request["schema"]["$ref"].rsplit("/", 1)[1]]
    assert set(body["properties"]) == {"url", "events"}
    assert schema["paths"][one]["put"]["operationId"] == "putWebhook"
