"""The push route, answer by answer: for a table of requests (good ones and each way to
get one wrong) the exact status, headers, body bytes and audit event. The table was
recorded from the DRF view that served every push before the plain view
(queues.api.pushview) took the ordinary ones over, so the two answer alike byte for byte;
the requests the plain view hands to the DRF view (an unusual Accept, a query string)
are in it too."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from compliance.audit import Actor
from compliance.models import AuditEvent
from queues.api import pushview
from queues.api.representations import iso
from queues.models import Job
from queues.services import queue_set_paused, queue_set_schema
from security import tokens
from security.models import ApiToken
from security.services import parse_rule, token_create

from .asgicalls import AsgiCall, asgi_call
from .support import clear_audit, make_token

pytestmark = pytest.mark.django_db

URL = "/api/v1/queues/jobs:q/jobs"
SETUP = Actor.command("test-setup")
JSON, PROBLEM = "application/json", "application/problem+json"
# What every answer of the route carries (the middleware's and DRF's Allow), beside its
# Content-Type, Content-Length and X-Request-ID.
COMMON = {
    "Allow": "GET, POST, HEAD, OPTIONS",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
BEARER = {"WWW-Authenticate": 'Bearer realm="flashq"'}


@dataclass
class World:
    tokens: dict[str, str]
    client: Client
    settings: Any


@dataclass(frozen=True)
class Send:
    body: bytes = b'{"data": {"n": 1}}'
    token: str | None = "full"
    content_type: str = JSON
    path: str = URL
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Expect:
    status: int
    #: The exact body; None for a job summary, checked against the stored job.
    body: bytes | None
    #: The call's one audit event (action push): status is the answer's.
    outcome: str
    actor: str = "token:full"
    details: dict[str, Any] = field(default_factory=dict)
    queue: str = "jobs:q"
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = PROBLEM


def _token(name: str, *allow: str, **options: Any) -> str:
    rules = [parse_rule(text, allow=True) for text in allow]
    return token_create(name=name, rules=rules, actor=SETUP, **options)[1]


@pytest.fixture
def world(db: None, settings: Any) -> World:
    revoked = make_token("gone", "*=*")
    expired = make_token("old", "*=*")
    ApiToken.objects.filter(name="gone").update(revoked_at=timezone.now())
    ApiToken.objects.filter(name="old").update(expires_at=timezone.now())
    full = make_token("full", "*=*,admin")
    public_id = full.split("_")[1]
    body = f"fq_{public_id}_{'a' * tokens.SECRET_LENGTH}"
    return World(
        tokens={
            "full": full,
            "narrow": make_token("narrow", "other:*=push"),
            "revoked": revoked,
            "expired": expired,
            "limited": _token("limited", "*=*", rate_limit="1/60s"),
            "generous": _token("generous", "*=*", rate_limit="100/60s"),
            "fenced": _token("fenced", "*=*", allowed_cidrs=["10.0.0.0/8"]),
            "other": make_token("other", "*=*"),
            "bad_secret": body + tokens.checksum(body),
            "unknown": tokens.generate()[0],
        },
        client=Client(enforce_csrf_checks=True),
        settings=settings,
    )


def send(world: World, request: Send) -> Any:
    headers: dict[str, Any] = dict(request.extra)
    if request.token is not None:
        raw = world.tokens.get(request.token, request.token)
        headers["HTTP_AUTHORIZATION"] = f"Bearer {raw}"
    headers.setdefault("REMOTE_ADDR", "127.0.0.1")
    return world.client.generic(
        "POST", request.path, request.body, content_type=request.content_type, **headers
    )


def _keyed_by_another(world: World) -> Send:
    assert send(world, Send(body=b'{"data": {}, "key": "k1"}', token="other")).status_code == 201
    return Send(body=b'{"data": {}, "key": "k1"}')


def _keyed_again(world: World) -> Send:
    assert send(world, Send(body=b'{"data": {}, "key": "k2"}')).status_code == 201
    return Send(body=b'{"data": {"n": 2}, "key": "k2"}')


def _over_the_rate(world: World) -> Send:
    assert send(world, Send(token="limited")).status_code == 201
    return Send(token="limited")


def _throttled(world: World) -> Send:
    world.settings.AUTH_FAILURE_RATE = "1/60s"
    assert send(world, Send(token="fq_wrong")).status_code == 401
    return Send(token="fq_wrong")


def _schema(world: World) -> Send:
    schema = {"type": "object", "required": ["to"], "properties": {"to": {"type": "string"}}}
    queue_set_schema(name="jobs:q", schema=schema, actor=SETUP)
    return Send(body=b'{"data": {"to": 5}}')


def _small_cap(world: World) -> Send:
    world.settings.MAX_REQUEST_BYTES = 64
    return Send(body=b'{"data": {"text": "' + b"x" * 100 + b'"}}')


def _paused(world: World) -> Send:
    assert send(world, Send()).status_code == 201
    queue_set_paused(name="jobs:q", paused=True, actor=SETUP)
    return Send()


def _global_fence(world: World) -> Send:
    world.settings.ALLOWED_CIDRS = ["10.0.0.0/8"]
    return Send()


def _problem(status: int, code: str, title: str, detail: bytes, errors: bytes = b"") -> bytes:
    """Only to keep the table short: the bytes as today's answers spell them."""
    head = b'{"type":"urn:flashq:problem:%s","title":"%s","status":%d,"detail":"%s","code":"%s"'
    tail = b',"errors":[%s]}' % errors if errors else b"}"
    return head % (code.encode(), title.encode(), status, detail, code.encode()) + tail


UNAUTHENTICATED = _problem(
    401,
    "unauthenticated",
    "Unauthenticated",
    b"Authentication credentials were missing or invalid.",
)
PARSE_ERROR = _problem(400, "parse_error", "Parse error", b"The request body is not valid JSON.")
INVALID = b"The request has invalid fields."
UNSTORABLE = b"The request body holds a value that cannot be stored."
CARD = b"Card numbers and card secrets may not be queued."
NOT_ACCEPTABLE = _problem(
    406, "not_acceptable", "Not acceptable", b"Could not satisfy the request Accept header."
)
NETWORK = {"network": "outside the allowed addresses", "code": "permission_denied"}
CREATED = Expect(
    201, None, "ok", details={"created": True, "queue_created": True}, content_type=JSON
)


def _refused_token(reason: str, public_id: bool = True) -> Expect:
    details = {"auth": reason, "code": "unauthenticated"}
    if public_id:
        details["public_id"] = "{public_id}"
    return Expect(401, UNAUTHENTICATED, "denied", "anonymous", details, headers=BEARER)


def _415(media_type: bytes) -> Expect:
    detail = b'Unsupported media type \\"%s\\" in request.' % media_type
    body = _problem(415, "unsupported_media_type", "Unsupported media type", detail)
    return Expect(415, body, "invalid", details={"code": "unsupported_media_type"})


def _400(path: bytes, message: bytes, *, detail: bytes = INVALID, audited: str = "") -> Expect:
    error = b'{"path":"%s","message":"%s"}' % (path, message)
    body = _problem(400, "invalid_input", "Invalid input", detail, error)
    details = {"code": "invalid_input", "paths": [audited or path.decode()]}
    return Expect(400, body, "invalid", details=details)


def _card(path: bytes, *, detail: bytes = CARD, queue: str = "jobs:q", audited: str = "") -> Expect:
    error = b'{"path":"%s","message":"holds a payment card number"}' % path
    body = _problem(422, "card-number-detected", "Card number detected", detail, error)
    details = {
        "code": "card-number-detected",
        "cards": "411111******1111",
        "paths": [audited or path.decode()],
    }
    return Expect(422, body, "invalid", details=details, queue=queue)


def _413(detail: bytes, errors: bytes = b"", paths: list[str] | None = None) -> Expect:
    body = _problem(413, "payload_too_large", "Payload too large", detail, errors)
    details: dict[str, Any] = {"code": "payload_too_large"}
    if paths:
        details["paths"] = paths
    return Expect(413, body, "invalid", details=details)


_NO_JOB = "00000000-0000-0000-0000-000000000001"
CASES: dict[str, tuple[Callable[[World], Send], Expect]] = {
    "created": (lambda w: Send(), CREATED),
    "keyed_again": (
        _keyed_again,
        Expect(200, None, "ok", details={"created": False}, content_type=JSON),
    ),
    "unicode_key": (lambda w: Send(body='{"data": {}, "key": "clé\u2028"}'.encode()), CREATED),
    "paused_queue": (
        _paused,
        Expect(201, None, "ok", details={"created": True}, content_type=JSON),
    ),
    "json_charset": (lambda w: Send(content_type="application/json; charset=utf-8"), CREATED),
    "accept_json": (lambda w: Send(extra={"HTTP_ACCEPT": JSON}), CREATED),
    "accept_any": (lambda w: Send(extra={"HTTP_ACCEPT": "*/*"}), CREATED),
    "accept_client": (lambda w: Send(extra={"HTTP_ACCEPT": f"{JSON}, {PROBLEM}"}), CREATED),
    "accept_indent": (lambda w: Send(extra={"HTTP_ACCEPT": "application/json; indent=2"}), CREATED),
    "format_json": (lambda w: Send(path=URL + "?format=json"), CREATED),
    "under_its_rate": (
        lambda w: Send(token="generous"),
        Expect(
            201,
            None,
            "ok",
            "token:generous",
            {"created": True, "queue_created": True},
            headers={"RateLimit-Limit": "100", "RateLimit-Remaining": "99", "RateLimit-Reset": "1"},
            content_type=JSON,
        ),
    ),
    "no_auth": (
        lambda w: Send(token=None),
        Expect(
            401, UNAUTHENTICATED, "denied", "anonymous", {"code": "unauthenticated"}, headers=BEARER
        ),
    ),
    "bad_token": (lambda w: Send(token="fq_wrong"), _refused_token("malformed", public_id=False)),
    "not_bearer": (
        lambda w: Send(token=None, extra={"HTTP_AUTHORIZATION": "Basic abc"}),
        _refused_token("malformed", public_id=False),
    ),
    "unknown_token": (lambda w: Send(token="unknown"), _refused_token("unknown")),
    "bad_secret": (lambda w: Send(token="bad_secret"), _refused_token("bad_secret")),
    "revoked": (lambda w: Send(token="revoked"), _refused_token("revoked")),
    "expired": (lambda w: Send(token="expired"), _refused_token("expired")),
    "forbidden": (
        lambda w: Send(token="narrow"),
        Expect(
            403,
            _problem(
                403,
                "permission_denied",
                "Permission denied",
                b"This token may not push on this queue.",
            ),
            "denied",
            "token:narrow",
            {"code": "permission_denied"},
        ),
    ),
    "token_fence": (
        lambda w: Send(token="fenced"),
        Expect(
            403,
            _problem(
                403,
                "permission_denied",
                "Permission denied",
                b"This token may not be used from this address.",
            ),
            "denied",
            "token:fenced",
            NETWORK,
        ),
    ),
    "global_fence": (
        _global_fence,
        Expect(
            403,
            _problem(
                403,
                "permission_denied",
                "Permission denied",
                b"Calls are not accepted from this address.",
            ),
            "denied",
            "anonymous",
            NETWORK,
        ),
    ),
    "rate_limited": (
        _over_the_rate,
        Expect(
            429,
            _problem(
                429,
                "rate_limited",
                "Too many requests",
                b"This token is over its rate limit; retry later.",
            ),
            "denied",
            "token:limited",
            {"code": "rate_limited"},
            headers={
                "Retry-After": "60",
                "RateLimit-Limit": "1",
                "RateLimit-Remaining": "0",
                "RateLimit-Reset": "60",
            },
        ),
    ),
    "throttled": (
        _throttled,
        Expect(
            429,
            _problem(
                429,
                "rate_limited",
                "Too many requests",
                b"Too many failed authentications from this address; retry later.",
            ),
            "denied",
            "anonymous",
            {"code": "rate_limited", "window_s": "60", "throttled": "1"},
            queue="",
            headers={
                "Retry-After": "60",
                "RateLimit-Limit": "1",
                "RateLimit-Remaining": "0",
                "RateLimit-Reset": "60",
            },
        ),
    ),
    "wrong_content_type": (lambda w: Send(content_type="text/plain"), _415(b"text/plain")),
    "no_content_type": (lambda w: Send(content_type=""), _415(b"")),
    "form": (
        lambda w: Send(body=b"a=1", content_type="application/x-www-form-urlencoded"),
        _415(b"application/x-www-form-urlencoded"),
    ),
    "broken_json": (
        lambda w: Send(body=b'{"data": '),
        Expect(400, PARSE_ERROR, "invalid", details={"code": "parse_error"}),
    ),
    "not_utf8": (
        lambda w: Send(body=b'{"data": "\xff"}'),
        Expect(400, PARSE_ERROR, "invalid", details={"code": "parse_error"}),
    ),
    "nan": (
        lambda w: Send(body=b'{"data": NaN}'),
        Expect(400, PARSE_ERROR, "invalid", details={"code": "parse_error"}),
    ),
    "huge_number": (
        lambda w: Send(body=b'{"data": 1e999}'),
        _400(b"/", b"a number is too large", detail=UNSTORABLE),
    ),
    "lone_surrogate": (
        lambda w: Send(body=b'{"data": "\\ud800"}'),
        _400(b"/data", b"a string is not valid Unicode (lone surrogate)", detail=UNSTORABLE),
    ),
    "empty_body": (lambda w: Send(body=b""), _400(b"/data", b"is required")),
    "not_an_object": (lambda w: Send(body=b"[]"), _400(b"/", b"must be a JSON object")),
    "unknown_field": (
        lambda w: Send(body=b'{"data": {}, "colour": "red"}'),
        _400(b"/colour", b"is not a known field", audited="/"),
    ),
    "bad_priority": (
        lambda w: Send(body=b'{"data": {}, "priority": "high"}'),
        _400(b"/priority", b"must be an integer"),
    ),
    "bad_queue_name": (
        lambda w: Send(path="/api/v1/queues/bad%20name/jobs"),
        Expect(
            400,
            _problem(
                400,
                "invalid_input",
                "Invalid input",
                b"Invalid queue name: a queue name is 1 to 128 characters of letters, "
                b"digits, _ . : -, starting with a letter or digit.",
            ),
            "invalid",
            details={"code": "invalid_input"},
            queue="",
        ),
    ),
    "oversize": (_small_cap, _413(b"The request body is larger than 64 bytes.")),
    "declared_oversize": (
        lambda w: Send(extra={"CONTENT_LENGTH": str(20 * 1024 * 1024)}),
        _413(b"The request body is larger than 10485760 bytes."),
    ),
    "containers": (
        lambda w: Send(body=b'{"data": [' + b"[]," * 100_000 + b"[]]}"),
        _413(
            b"The request body holds more than 100000 arrays and objects.",
            b'{"path":"/","message":"more than 100000 arrays and objects"}',
            ["/"],
        ),
    ),
    "chunked": (
        lambda w: Send(extra={"HTTP_TRANSFER_ENCODING": "chunked", "CONTENT_LENGTH": ""}),
        Expect(
            411,
            _problem(
                411,
                "length_required",
                "Length required",
                b"Send the body with a Content-Length, not chunked.",
            ),
            "invalid",
            details={"code": "length_required"},
        ),
    ),
    "schema": (
        _schema,
        Expect(
            422,
            _problem(
                422,
                "schema_validation_failed",
                "Schema validation failed",
                b"Job data does not match the queue's schema.",
                b'{"path":"/data/to","message":"5 is not of type \\"string\\""}',
            ),
            "invalid",
            details={"code": "schema_validation_failed", "paths": ["/data"]},
        ),
    ),
    "card_in_data": (
        lambda w: Send(body=b'{"data": {"pan": "4111 1111 1111 1111"}}'),
        _card(b"/data/pan", audited="/data"),
    ),
    "card_in_queue": (
        lambda w: Send(path="/api/v1/queues/q4111111111111111/jobs"),
        _card(b"/queue", queue=""),
    ),
    "card_in_request_id": (
        lambda w: Send(extra={"HTTP_X_REQUEST_ID": "4111111111111111"}),
        _card(b"/headers/X-Request-ID", detail=b"Card numbers may not be sent in a request id."),
    ),
    "key_conflict": (
        _keyed_by_another,
        Expect(
            409,
            _problem(
                409,
                "key_conflict",
                "Key conflict",
                b"An unfinished job of this queue, pushed by another token, holds this key.",
            ),
            "conflict",
            details={"code": "key_conflict"},
        ),
    ),
    "unknown_dependency": (
        lambda w: Send(body=b'{"data": {}, "depends_on": ["%s"]}' % _NO_JOB.encode()),
        Expect(
            422,
            _problem(
                422,
                "unknown_dependency",
                "Unknown dependency",
                b"depends_on names jobs that do not exist or that this token may not read.",
                b'{"path":"/depends_on/0","message":"names no job this token may read"}',
            ),
            "invalid",
            details={"code": "unknown_dependency", "paths": ["/depends_on/0"]},
        ),
    ),
    "accept_html": (
        lambda w: Send(extra={"HTTP_ACCEPT": "text/html"}),
        Expect(406, NOT_ACCEPTABLE, "invalid", details={"code": "not_acceptable"}),
    ),
    "accept_html_no_auth": (
        lambda w: Send(token=None, extra={"HTTP_ACCEPT": "text/html"}),
        Expect(406, NOT_ACCEPTABLE, "invalid", "anonymous", {"code": "not_acceptable"}),
    ),
    "format_xml": (
        lambda w: Send(path=URL + "?format=xml"),
        Expect(
            404,
            _problem(404, "not_found", "Not found", b"Not found."),
            "not_found",
            details={"code": "not_found"},
        ),
    ),
}


def _summary(job: Job, indent: bool) -> bytes:
    """A job summary as the route renders it: compact, or indented by 2 when asked."""
    fields = [
        ("id", f'"{job.id}"'),
        ("queue", '"jobs:q"'),
        ("state", '"waiting"'),
        ("priority", "0"),
        ("attempts", "0"),
        ("max_attempts", "3"),
        ("key", "null" if job.key is None else f'"{job.key}"'.replace("\u2028", "\\u2028")),
        ("group", "null"),
        ("run_at", f'"{iso(job.run_at)}"'),
        ("created_at", f'"{iso(job.created_at)}"'),
    ]
    if indent:
        return ("{\n" + ",\n".join(f'  "{k}": {v}' for k, v in fields) + "\n}").encode()
    return ("{" + ",".join(f'"{k}":{v}' for k, v in fields) + "}").encode()


#: The pushes the plain view hands to the DRF view (pushview: Accept, query string).
TO_DRF = {"accept_indent", "accept_html", "accept_html_no_auth", "format_json", "format_xml"}


@pytest.mark.parametrize("case", list(CASES))
def test_each_answer_of_the_push_route_is_byte_for_byte_todays(
    world: World, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup, expect = CASES[case]
    request = setup(world)
    clear_audit()
    handed: list[str] = []
    drf_view = pushview._drf_view

    def spy(*args: Any, **kwargs: Any) -> Any:
        handed.append(case)
        return drf_view(*args, **kwargs)

    monkeypatch.setattr(pushview, "_drf_view", spy)
    response = send(world, request)
    assert bool(handed) == (case in TO_DRF)
    assert response.status_code == expect.status, response.content
    event = AuditEvent.objects.get()
    body = expect.body
    job_ids: list[str] = []
    if body is None:
        job = Job.objects.get(id=event.job_ids[0])
        body = _summary(job, indent="indent" in request.extra.get("HTTP_ACCEPT", ""))
        job_ids = [str(job.id)]
    assert response.content == body
    headers = {name: value for name, value in response.items() if name != "X-Request-ID"}
    assert headers == {
        **COMMON,
        "Content-Type": expect.content_type,
        "Content-Length": str(len(body)),
        **expect.headers,
    }
    raw = world.tokens.get(str(request.token), "")
    public_id = raw.split("_")[1] if raw.count("_") == 2 else ""
    details = {
        k: v.format(public_id=public_id) if isinstance(v, str) else v
        for k, v in expect.details.items()
    }
    assert (event.action, event.status, event.outcome, event.actor, event.queue) == (
        "push",
        expect.status,
        expect.outcome,
        expect.actor,
        expect.queue,
    )
    assert (event.details, event.job_ids) == (details, job_ids)
    assert event.request_id == response["X-Request-ID"]


def test_an_error_inside_a_push_is_a_500_with_its_event(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug, not a refusal: Django's 500 page (problem+json under /api/), the error
    raised for the server log, and the call's event."""

    def broken(**kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr("queues.services.job_push", broken)
    world.client.raise_request_exception = False
    clear_audit()
    response = send(world, Send())
    assert (response.status_code, response["Content-Type"]) == (500, PROBLEM)
    assert response.json()["code"] == "internal_error"
    event = AuditEvent.objects.get()
    assert (event.action, event.status, event.outcome, event.actor, event.queue) == (
        "push",
        500,
        "error",
        "token:full",
        "jobs:q",
    )
    assert event.details == {"code": "internal_error"}


def test_a_push_under_the_asgi_server_takes_the_plain_view(
    transactional_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under ASGI (the deploy's server) the sync view runs in Django's thread, as the
    DRF view did: the same answer and event."""
    token = make_token("full", "*=*,admin")
    monkeypatch.setattr(pushview, "_drf_view", None)  # not called

    async def until_answered(call: AsgiCall) -> None:
        while not call.ended:
            await asyncio.sleep(0.01)

    call = asyncio.run(
        asgi_call(
            "POST",
            URL,
            headers={"authorization": f"Bearer {token}", "content-type": JSON},
            body=b'{"data": {"n": 1}}',
            meanwhile=until_answered,
        )
    )
    start = call.sent[0]
    assert start["status"] == 201
    assert (b"Content-Type", b"application/json") in start["headers"]
    event = AuditEvent.objects.get(action="push")
    assert call.body == _summary(Job.objects.get(id=event.job_ids[0]), indent=False)


# -- the route as documented ------------------------------------------------------------

SNAPSHOT = Path(__file__).parent / "snapshots" / "push_operation.json"


def _referenced(schema: dict[str, Any], node: Any, found: dict[str, Any]) -> None:
    """The components ``node`` refers to, and theirs, into ``found``."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            name = ref.rsplit("/", 1)[1]
            if name not in found:
                found[name] = schema["components"]["schemas"][name]
                _referenced(schema, found[name], found)
        for value in node.values():
            _referenced(schema, value, found)
    elif isinstance(node, list):
        for value in node:
            _referenced(schema, value, found)


def test_the_schema_describes_push_as_it_did(client: Client) -> None:
    """The push operation, and every component it refers to, as recorded from the DRF
    view (SNAPSHOT); FLASHQ_WRITE_SNAPSHOT=1 records it anew."""
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    schema = response.json()
    operation = schema["paths"]["/api/v1/queues/{queue}/jobs"]["post"]
    components: dict[str, Any] = {}
    _referenced(schema, operation, components)
    described = {"operation": operation, "components": dict(sorted(components.items()))}
    if os.environ.get("FLASHQ_WRITE_SNAPSHOT"):
        SNAPSHOT.write_text(json.dumps(described, indent=2, sort_keys=True) + "\n")
    assert described == json.loads(SNAPSHOT.read_text())
