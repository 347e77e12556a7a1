"""One path for every action: services record their own audit event, with whoever
asked as actor, in the transaction of their change; commands and system changes go
through the same services; nothing from inside a payload reaches the trail."""

from __future__ import annotations

import ast
import json
import logging
import uuid
from collections.abc import Callable
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from compliance.audit import Actor
from compliance.models import AuditEvent
from queues import pulling, services
from queues.api.auditpaths import audit_path
from queues.api.operations import Operation
from queues.flowspec import FlowNode
from queues.jobspec import JobSpec
from queues.models import Job, JobState
from security.models import ApiToken

from .support import Api, clear_audit, pull, push

pytestmark = pytest.mark.django_db

OPERATOR = Actor.command("unit")


def _only_event() -> AuditEvent:
    [event] = AuditEvent.objects.exclude(action="token.create")
    return event


# -- services ----------------------------------------------------------------------------


OWNER = "family:unit"


def _pushed() -> uuid.UUID:
    spec = JobSpec(data={})
    return services.job_push(queue_name="q", spec=spec, owner=OWNER, actor=OPERATOR).job.id


def _leased() -> tuple[uuid.UUID, uuid.UUID]:
    job_id = _pushed()
    [job] = pulling.jobs_pull(
        queue_name="q", count=1, lease_seconds=30, owner=OWNER, actor=OPERATOR
    )
    assert job.id == job_id and job.lease_id is not None
    return job.id, job.lease_id


def _finished() -> uuid.UUID:
    job_id = _pushed()
    services.job_cancel(job_id=job_id, actor=OPERATOR)
    return job_id


HOOK = "https://hooks.example.com/flashq"


def _hooked() -> None:
    services.webhook_save(queue_name="q", name="h", url=HOOK, events=["failed"], actor=OPERATOR)


CALLS: dict[str, tuple[Callable[[], Any], Callable[[Any, Actor], Any], str]] = {
    # name: (setup, the call, the action it records)
    "push": (lambda: None, lambda _, a: services.job_push(
        queue_name="q", spec=JobSpec(data={}), owner=OWNER, actor=a), "push"),
    "push batch": (lambda: None, lambda _, a: services.jobs_push(
        queue_name="q", specs=[JobSpec(data={})] * 3, owner=OWNER, actor=a), "push"),
    "pull": (_pushed, lambda _, a: pulling.jobs_pull(
        queue_name="q", count=5, lease_seconds=30, owner=OWNER, actor=a), "pull"),
    "ack": (_leased, lambda s, a: services.job_ack(
        job_id=s[0], lease_id=s[1], owner=OWNER, actor=a), "ack"),
    "ack batch": (_leased, lambda s, a: services.jobs_ack(
        acks=[services.AckSpec(s[0], s[1])], owner=OWNER, actor=a), "ack"),
    "fail": (_leased, lambda s, a: services.job_fail(
        job_id=s[0], lease_id=s[1], owner=OWNER, error="boom", actor=a), "fail"),
    "progress": (_leased, lambda s, a: services.job_progress(
        job_id=s[0], lease_id=s[1], owner=OWNER, progress=5, actor=a), "progress"),
    "cancel": (_pushed, lambda s, a: services.job_cancel(job_id=s, actor=a), "cancel"),
    "update": (_pushed, lambda s, a: services.job_update(job_id=s, data={"n": 2}, actor=a),
               "update"),
    "retry": (_finished, lambda s, a: services.job_retry(job_id=s, actor=a), "retry"),
    "pause": (_pushed, lambda _, a: services.queue_set_paused(name="q", paused=True, actor=a),
              "pause"),
    "flow push": (lambda: None, lambda _, a: services.flow_push(
        root=FlowNode("q", JobSpec(data={}), children=(FlowNode("q2", JobSpec(data={})),)),
        owner=OWNER, actor=a), "flow.push"),
    "webhook save": (lambda: None, lambda _, a: services.webhook_save(
        queue_name="q", name="h", url=HOOK, events=["failed"], actor=a), "webhook.save"),
    "webhook rotate": (_hooked, lambda _, a: services.webhook_rotate_secret(
        queue_name="q", name="h", actor=a), "webhook.rotateSecret"),
    "webhook delete": (_hooked, lambda _, a: services.webhook_delete(
        queue_name="q", name="h", actor=a), "webhook.delete"),
}  # fmt: skip


@pytest.mark.parametrize("name", CALLS)
def test_each_service_records_one_event_naming_its_actor(name: str) -> None:
    setup, call, action = CALLS[name]
    state = setup()
    clear_audit()
    actor = Actor.command("someone")
    call(state, actor)
    [event] = AuditEvent.objects.all()
    assert (event.action, event.actor, event.outcome) == (action, "command:someone", "ok")
    assert event.queue == "q"


def _services_modules() -> list[Any]:
    import importlib
    import pkgutil

    return [
        importlib.import_module(f"queues.services.{info.name}")
        for info in pkgutil.iter_modules(services.__path__)
    ]


@pytest.mark.parametrize("name", CALLS)
def test_a_service_whose_event_cannot_be_written_changes_nothing(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup, call, _ = CALLS[name]
    state = setup()
    before = sorted(Job.objects.values_list("id", "state", "attempts", "progress", "data"))

    def refuse(**kwargs: Any) -> None:
        raise RuntimeError("audit store unavailable")

    for module in _services_modules():  # every services module that records events
        if hasattr(module, "audit_record"):
            monkeypatch.setattr(module, "audit_record", refuse)
    monkeypatch.setattr("queues.pulling.audit_record", refuse)
    monkeypatch.setattr("queues.bulkinsert.audit_insert", lambda event: refuse())
    with pytest.raises(RuntimeError):
        call(state, OPERATOR)
    after = sorted(Job.objects.values_list("id", "state", "attempts", "progress", "data"))
    assert after == before


def test_only_services_write_audit_events() -> None:
    """Views, admin and commands never call audit_record (or write an event with
    audit_insert, as the push's single statement does): they call a service. (The API
    base view records refusals with audit_refusal, which changes nothing.)"""
    allowed = {
        "queues/bulkinsert.py",  # the push services' writer
        "queues/services/actions.py",
        "queues/services/clean.py",
        "queues/services/flow_cancel.py",
        "queues/services/flows.py",  # a keyed flow's retry answered with the existing tree
        "queues/services/grants.py",
        "queues/services/handback.py",
        "queues/services/keys.py",
        "queues/services/queue_settings.py",
        "queues/services/reports.py",
        "queues/services/schedule_fire.py",  # a tick's failure, outcome error
        "queues/services/schedules.py",
        "queues/services/webhooks.py",
        "queues/pulling.py",
        "queues/reads.py",
        "queues/staffreads.py",  # the admin's audited job reads and reveals
        "security/services.py",
        "compliance/audit/services.py",
        "compliance/retention.py",
        "compliance/erasure.py",
        "compliance/logins.py",  # admin logins: django.contrib.auth and axes signals
        "compliance/staffrights.py",  # staff rights: auth and guardian signals
        "compliance/roles.py",  # setup_roles' service
        "compliance/dbroles.py",  # grant_runtime_role's service
        # An audit policy below the floor raised to it, on the record.
        "compliance/migrations/0012_audit_retention_floor.py",
        "security/accessreview.py",  # the access review, an audited read
    }
    root = Path(settings.BASE_DIR)
    callers = set()
    for path in root.glob("*/**/*.py"):
        relative = path.relative_to(root).as_posix()
        if relative.startswith((".venv/", "tests/", "bench/", "compliance/audit/record.py")):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in ("audit_record", "audit_insert", "audit_inserted") or (
                    name == "create" and "AuditEvent" in ast.unparse(func)
                ):
                    callers.add(relative)
    assert callers == allowed


# -- commands and the system ---------------------------------------------------------------


def test_commands_act_through_services_under_their_own_name() -> None:
    out = StringIO()
    call_command("create_token", "svc", "--allow", "jobs:*=push", stdout=out)
    call_command("revoke_token", "svc")
    events = [(e.action, e.actor) for e in AuditEvent.objects.order_by("id")]
    assert events == [
        ("token.create", "command:create_token"),
        ("token.revoke", "command:revoke_token"),
    ]
    created = AuditEvent.objects.get(action="token.create")
    assert created.details["rules"] == ["allow jobs:*=push"]
    assert out.getvalue().strip().splitlines()[-1] not in json.dumps(created.details)


def test_dev_bootstrap_creates_and_replaces_its_token_through_services(
    tmp_path: Path, settings: Any
) -> None:
    settings.DEV_DIR = tmp_path
    call_command("dev_bootstrap")
    ApiToken.objects.filter(name="dev-full-access").update(revoked_at=timezone.now())
    call_command("dev_bootstrap")  # a revoked dev token is replaced, not revived
    assert not ApiToken.objects.get(name="dev-full-access").revoked
    events = [(e.action, e.actor) for e in AuditEvent.objects.order_by("id")]
    assert events == [
        ("staff.flagChange", "command:dev_bootstrap"),  # the admin login, a superuser
        ("token.create", "command:dev_bootstrap"),
        ("token.delete", "command:dev_bootstrap"),
        ("token.create", "command:dev_bootstrap"),
    ]


def _expire_leases() -> None:
    Job.objects.filter(state=JobState.ACTIVE).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )


def test_sweep_leases_records_each_batch_with_its_jobs(api: Api, full: str) -> None:
    pushed = [push(api, full, queue="jobs:a")["id"] for _ in range(3)]
    pull(api, full, queue="jobs:a", count=3)
    _expire_leases()
    expiring = push(api, full, queue="jobs:b", ttl=1000)["id"]
    Job.objects.filter(id=expiring).update(expires_at=timezone.now() - timedelta(seconds=1))
    clear_audit()
    assert "Requeued 3" in call_command("sweep_leases")
    recovered, expired = AuditEvent.objects.order_by("id")
    assert (recovered.action, recovered.actor, recovered.queue) == (
        "lease.recover",
        "command:sweep_leases",
        "jobs:a",
    )
    assert sorted(recovered.job_ids) == sorted(pushed)
    assert recovered.details == {"count": 3, "waiting": 3, "failed": 0}
    assert (expired.action, expired.job_ids) == ("ttl.expire", [expiring])
    clear_audit()
    call_command("sweep_leases")
    assert not AuditEvent.objects.exists()  # nothing changed, nothing recorded


def test_a_pull_that_recovers_expired_leases_records_it_under_the_system(
    api: Api, full: str
) -> None:
    first = push(api, full, queue="jobs:a", max_attempts=1)["id"]
    pull(api, full, queue="jobs:a")
    _expire_leases()
    clear_audit()
    call = api.post("/queues/jobs:a/pull", {}, as_=full)
    assert call.body == {"jobs": []}
    recovery = AuditEvent.objects.get(actor="system:lease-recovery")
    assert recovery.job_ids == [first]
    assert recovery.details == {"count": 1, "waiting": 0, "failed": 1}
    assert recovery.request_id == call.headers["X-Request-ID"]
    assert Job.objects.get(id=first).state == JobState.FAILED
    [own] = AuditEvent.objects.exclude(actor__startswith="system:")
    assert (own.action, own.actor, own.job_ids) == ("pull", "token:full", [])


# -- the API's vocabulary ------------------------------------------------------------------


def test_every_view_names_its_operations_and_the_schema_uses_their_ids(api: Api) -> None:
    from django.urls import get_resolver

    from queues.api.base import FlashqApiView

    views: list[type[FlashqApiView]] = [
        pattern.callback.view_class  # type: ignore[union-attr]
        for urls in ("queues.api.urls", "compliance.urls")
        for pattern in get_resolver(urls).url_patterns
    ]
    used = {op for view in views for op in view.operations.values()}
    assert all(issubclass(view, FlashqApiView) for view in views)
    assert used == set(Operation)
    schema = api.client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    ids = {op["operationId"] for ops in schema.json()["paths"].values() for op in ops.values()}
    assert ids == {operation.operation_id for operation in Operation}


def test_a_misspelt_verb_fails_loudly_instead_of_denying() -> None:
    from security.access import Verb

    with pytest.raises(AttributeError):
        Verb.PSH  # type: ignore[attr-defined]  # noqa: B018
    with pytest.raises(ValueError):
        Verb("psh")


# -- nothing from inside a payload reaches the trail ------------------------------------------


@pytest.mark.parametrize(
    ("pointer", "kept"),
    [
        ("/data", "/data"),
        ("/data/patient/ssn:123-45-6789", "/data"),
        ("/jobs/3/data/x/y", "/jobs/3/data"),
        ("/jobs/3/backoff/delay", "/jobs/3/backoff/delay"),
        ("/jobs/12/result/secret", "/jobs/12/result"),
        ("/alice@example.com", "/"),
        ("/jobs/alice@example.com", "/jobs"),
        ("/jobs/3/alice@example.com", "/jobs/3"),
        ("/tags/1", "/tags/1"),
        ("/depends_on/99", "/depends_on/99"),
        ("/children/2/children/0/job/data/ssn", "/children/2/children/0/job/data"),
        ("/children/2/alice@example.com", "/children/2"),
        ("/children/bob/job", "/children"),
        ("/children/0/queue", "/children/0/queue"),
        ("/\x00", "/"),
        ("/", "/"),
    ],
)
def test_audit_paths_stop_where_client_chosen_content_begins(pointer: str, kept: str) -> None:
    assert audit_path(pointer) == kept


@pytest.mark.parametrize(
    "body",
    [
        {"data": {}, "alice@example.com": 1},
        {"data": {"patient": {"ssn:123-45-6789": "\u0000"}}},
        {"data": {"patient": {"ssn:123-45-6789": 1e400}}},
    ],
    ids=["unknown field named after a person", "NUL under a key", "number too large"],
)
def test_client_chosen_text_never_reaches_the_audit_trail_or_its_log(
    api: Api, full: str, body: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    clear_audit()
    raw = json.dumps(body).replace("Infinity", "1e400")
    with caplog.at_level(logging.INFO, logger="flashq.audit"):
        logging.getLogger("flashq.audit").addHandler(caplog.handler)
        try:
            call = api.post("/queues/jobs:q/jobs", as_=full, raw=raw)
        finally:
            logging.getLogger("flashq.audit").removeHandler(caplog.handler)
    assert call.status == 400
    event = _only_event()
    logged = " ".join(r.getMessage() for r in caplog.records if r.name == "flashq.audit")
    assert logged
    for stored in (json.dumps(event.details), logged):
        assert "alice" not in stored and "ssn" not in stored and "123-45" not in stored
    assert event.details["paths"] in (["/"], ["/data"])


@pytest.mark.parametrize(
    ("body", "kept"),
    [
        ({"data": {}, "tags/123": 1}, "/"),
        ({"jobs": [{"data": {}, "jobs/1/x": 1}]}, "/jobs/0"),
        ({"data": {}, "backoff": {"delay/7": 1}}, "/backoff"),
    ],
)
def test_a_slash_in_a_client_key_cannot_pose_as_structure(
    api: Api, full: str, body: dict[str, Any], kept: str
) -> None:
    route = "/queues/q/jobs/batch" if "jobs" in body else "/queues/q/jobs"
    clear_audit()
    call = api.post(route, body, as_=full)
    assert call.status == 400
    assert any("~1" in error["path"] for error in call.body["errors"])  # RFC 6901 escape
    assert _only_event().details["paths"] == [kept]
    assert audit_path("/tags/\u0661\u0662") == "/tags"  # Arabic-Indic digits are not positions


def test_a_refusal_names_the_caller_and_the_jobs_it_was_about(api: Api, full: str) -> None:
    clear_audit()
    response = api.client.get(
        "/api/v1/queues", HTTP_AUTHORIZATION=f"Bearer {full}", HTTP_ACCEPT="application/xml"
    )
    assert response.status_code == 406
    assert (_only_event().actor, _only_event().status) == ("token:full", 406)
    clear_audit()
    ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    acks = {"jobs": [{"id": job_id, "lease_id": str(uuid.uuid4())} for job_id in ids]}
    assert api.post("/jobs/ack", acks, as_=full).status == 404
    assert _only_event().job_ids == ids


def test_a_keyed_push_that_keeps_losing_its_key_race_is_a_503_that_stores_nothing(
    api: Api, full: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each try runs in its own savepoint; after a few lost races the client is told to
    retry (safe: the key makes the push idempotent), never a 500."""
    from django.db import IntegrityError

    tries = {"n": 0}

    def always_taken(*args: Any) -> None:
        tries["n"] += 1
        raise IntegrityError("job_key_unfinished_uniq")

    push(api, full, queue="q")
    # The one-statement insert finds the key held, and each lookup after it loses.
    monkeypatch.setattr("queues.services.push.insert_keyed_job", lambda *args, **kw: False)
    monkeypatch.setattr("queues.services.push._push_once", always_taken)
    call = api.post("/queues/q/jobs", {"data": {}, "key": "alice@example.com"}, as_=full)
    assert call.status == 503 and "Retry-After" in call.headers
    assert tries["n"] == services.KEYED_PUSH_TRIES
    assert Job.objects.count() == 1
    event = AuditEvent.objects.order_by("id").last()
    assert event is not None and event.status == 503
    assert "alice" not in json.dumps(event.details)
