"""The permission matrix: each persona against each route. Personas follow the security
guide: producer (jobs:* push,getJob,cancel), worker (jobs:* pull,ack,fail,progress),
admin (*: * and admin), stranger (other:* only), and no token at all."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from compliance.models import AuditEvent
from queues import services
from queues.models import Job, Schedule
from queues.schedulespec import parse_schedule_spec
from security.models import ApiToken
from security.services import token_create

from .personas import Personas
from .support import SETUP, Api, Call, make_token, pull, push

pytestmark = pytest.mark.django_db

OK = "ok"


def _lease(api: Api, job: dict[str, Any]) -> str:
    Job.objects.filter(id=job["id"]).update(state="waiting")
    return str(
        next(
            j["lease_id"] for j in pull(api, job["_setup"], queue="jobs:q") if j["id"] == job["id"]
        )
    )


def _delayed(job: dict[str, Any]) -> str:
    Job.objects.filter(id=job["id"]).update(run_at=timezone.now() + timedelta(hours=1))
    return str(job["id"])


# Who may push into jobs:q: the producer and the admin.
PUSHERS = {"producer": 201, "worker": 403, "admin": 201, "stranger": 403, "none": 401}

# A producer verb on the job: the stranger cannot see jobs:q at all, so 404.
PRODUCER_JOB_VERB = {"producer": 200, "worker": 403, "admin": 200, "stranger": 404, "none": 401}

# A worker verb on the job (with a lease): the producer sees the queue but lacks the verb.
WORKER_JOB_VERB = {"producer": 403, "worker": 200, "admin": 200, "stranger": 404, "none": 401}

# Only the admin persona (getJobs, stats, pause, resume).
ADMIN_ONLY = {"producer": 403, "worker": 403, "admin": 200, "stranger": 403, "none": 401}

_EVERY_MINUTE = {"every_ms": 60_000, "data": {}}


_HOOK_URL = "https://hooks.example.com/flashq"
_HOOK = {"url": _HOOK_URL, "events": ["completed"]}


def _webhooked() -> str:
    """The webhook "h" of jobs:q, saved through the service; its routes' prefix."""
    services.webhook_save(
        queue_name="jobs:q", name="h", url=_HOOK_URL, events=["completed"], actor=SETUP
    )
    return "/queues/jobs:q/webhooks"


def _scheduled() -> str:
    """The schedule "s" of jobs:q, saved through the service; its routes' prefix."""
    spec = parse_schedule_spec(_EVERY_MINUTE)
    owner = ApiToken.objects.filter(name="schedule-owner").first()
    if owner is None:  # a live token's family: a trigger pushes as the owner
        owner, _ = token_create(name="schedule-owner", rules=[], actor=SETUP)
    services.schedule_save(
        queue_name="jobs:q", name="s", spec=spec, owner=f"family:{owner.family}", actor=SETUP
    )
    return "/queues/jobs:q/schedules"


# route -> (call, expectations per persona). The job lives in queue jobs:q.
ROUTES: dict[str, tuple[Callable[[Api, dict[str, Any], str | None], Call], dict[str, Any]]] = {
    "push": (
        lambda api, job, t: api.post("/queues/jobs:q/jobs", {"data": {}}, as_=t),
        PUSHERS,
    ),
    "push batch": (
        lambda api, job, t: api.post("/queues/jobs:q/jobs/batch", {"jobs": [{"data": {}}]}, as_=t),
        PUSHERS,
    ),
    "pull": (
        lambda api, job, t: api.post("/queues/jobs:q/pull", {}, as_=t),
        {"producer": 403, "worker": 200, "admin": 200, "stranger": 403, "none": 401},
    ),
    "getJob": (
        lambda api, job, t: api.get(f"/jobs/{job['id']}", as_=t),
        PRODUCER_JOB_VERB,
    ),
    # getJob's verb; timeout 0: the answer at once, the job as it is.
    "waitJob": (
        lambda api, job, t: api.get(f"/jobs/{job['id']}/wait?timeout_ms=0", as_=t),
        PRODUCER_JOB_VERB,
    ),
    "getJobs": (
        lambda api, job, t: api.get("/queues/jobs:q/jobs", as_=t),
        ADMIN_ONLY,
    ),
    # The stream opens (200) and is closed at once: its event is written on opening.
    "subscribeEvents": (
        lambda api, job, t: api.get("/queues/jobs:q/events", as_=t),
        ADMIN_ONLY,
    ),
    "cancel": (
        lambda api, job, t: api.post(f"/jobs/{job['id']}/cancel", as_=t),
        PRODUCER_JOB_VERB,
    ),
    "update": (
        lambda api, job, t: api.patch(f"/jobs/{job['id']}", {"data": {}}, as_=t),
        {"producer": 403, "worker": 403, "admin": 200, "stranger": 404, "none": 401},
    ),
    "retry": (
        lambda api, job, t: api.post(f"/jobs/{job['id']}/retry", as_=t),
        {"producer": 403, "worker": 403, "admin": 409, "stranger": 404, "none": 401},
    ),
    "ack": (
        lambda api, job, t: api.post(
            f"/jobs/{job['id']}/ack", {"lease_id": _lease(api, job)}, as_=t
        ),
        WORKER_JOB_VERB,
    ),
    "ack batch": (
        lambda api, job, t: api.post(
            "/jobs/ack", {"jobs": [{"id": job["id"], "lease_id": _lease(api, job)}]}, as_=t
        ),
        WORKER_JOB_VERB,
    ),
    "fail": (
        lambda api, job, t: api.post(
            f"/jobs/{job['id']}/fail", {"lease_id": _lease(api, job)}, as_=t
        ),
        WORKER_JOB_VERB,
    ),
    "progress": (
        lambda api, job, t: api.post(
            f"/jobs/{job['id']}/progress", {"lease_id": _lease(api, job), "progress": 5}, as_=t
        ),
        WORKER_JOB_VERB,
    ),
    "me": (
        lambda api, job, t: api.get("/me", as_=t),
        {"producer": 200, "worker": 200, "admin": 200, "stranger": 200, "none": 401},
    ),
    "listQueues": (
        lambda api, job, t: api.get("/queues", as_=t),
        {"producer": 200, "worker": 200, "admin": 200, "stranger": 200, "none": 401},
    ),
    "stats": (
        lambda api, job, t: api.get("/queues/jobs:q", as_=t),
        ADMIN_ONLY,
    ),
    "pause": (
        lambda api, job, t: api.post("/queues/jobs:q/pause", as_=t),
        ADMIN_ONLY,
    ),
    "resume": (
        lambda api, job, t: api.post("/queues/jobs:q/resume", as_=t),
        ADMIN_ONLY,
    ),
    "setRateLimit": (
        lambda api, job, t: api.request(
            "PUT", "/queues/jobs:q/rate-limit", {"max": 10, "duration_ms": 1000}, as_=t
        ),
        ADMIN_ONLY,
    ),
    "removeRateLimit": (
        lambda api, job, t: api.request("DELETE", "/queues/jobs:q/rate-limit", as_=t),
        ADMIN_ONLY,
    ),
    "setSchema": (
        lambda api, job, t: api.request(
            "PUT", "/queues/jobs:q/schema", {"schema": {"type": "object"}}, as_=t
        ),
        ADMIN_ONLY,
    ),
    "removeSchema": (
        lambda api, job, t: api.request("DELETE", "/queues/jobs:q/schema", as_=t),
        ADMIN_ONLY,
    ),
    "setConcurrency": (
        lambda api, job, t: api.request("PUT", "/queues/jobs:q/concurrency", {"max": 3}, as_=t),
        ADMIN_ONLY,
    ),
    "removeConcurrency": (
        lambda api, job, t: api.request("DELETE", "/queues/jobs:q/concurrency", as_=t),
        ADMIN_ONLY,
    ),
    "release": (
        lambda api, job, t: api.post(
            f"/jobs/{job['id']}/release", {"lease_id": _lease(api, job)}, as_=t
        ),
        WORKER_JOB_VERB,
    ),
    "snooze": (
        lambda api, job, t: api.post(
            f"/jobs/{job['id']}/snooze", {"lease_id": _lease(api, job), "delay_ms": 0}, as_=t
        ),
        WORKER_JOB_VERB,
    ),
    "promote": (
        lambda api, job, t: api.post(f"/jobs/{_delayed(job)}/promote", as_=t),
        {"producer": 403, "worker": 403, "admin": 200, "stranger": 404, "none": 401},
    ),
    "retryFailed": (
        lambda api, job, t: api.post("/queues/jobs:q/retry-failed", {"limit": 10}, as_=t),
        ADMIN_ONLY,
    ),
    # Schedules (the schedule verb): the schedule "s" of jobs:q exists beforehand.
    "putSchedule": (
        lambda api, job, t: api.request("PUT", f"{_scheduled()}/s", _EVERY_MINUTE, as_=t),
        ADMIN_ONLY,
    ),
    "getSchedule": (lambda api, job, t: api.get(f"{_scheduled()}/s", as_=t), ADMIN_ONLY),
    "listSchedules": (lambda api, job, t: api.get(_scheduled(), as_=t), ADMIN_ONLY),
    "pauseSchedule": (lambda api, job, t: api.post(f"{_scheduled()}/s/pause", as_=t), ADMIN_ONLY),
    "resumeSchedule": (
        lambda api, job, t: api.post(f"{_scheduled()}/s/resume", as_=t),
        ADMIN_ONLY,
    ),
    "triggerSchedule": (
        lambda api, job, t: api.post(f"{_scheduled()}/s/trigger", as_=t),
        {**ADMIN_ONLY, "admin": 201},
    ),
    "deleteSchedule": (
        lambda api, job, t: api.request("DELETE", f"{_scheduled()}/s", as_=t),
        {**ADMIN_ONLY, "admin": 204},
    ),
    "setGroupConcurrency": (
        lambda api, job, t: api.request(
            "PUT", "/queues/jobs:q/group-concurrency", {"max": 3}, as_=t
        ),
        ADMIN_ONLY,
    ),
    # A flow whose jobs all go to jobs:q (push needed there), and the job's children.
    "pushFlow": (
        lambda api, job, t: api.post(
            "/queues/jobs:q/flows",
            {"job": {"data": {}}, "children": [{"queue": "jobs:q", "job": {"data": {}}}]},
            as_=t,
        ),
        PUSHERS,
    ),
    "getJobChildren": (
        lambda api, job, t: api.get(f"/jobs/{job['id']}/children", as_=t),
        PRODUCER_JOB_VERB,
    ),
    "removeGroupConcurrency": (
        lambda api, job, t: api.request("DELETE", "/queues/jobs:q/group-concurrency", as_=t),
        ADMIN_ONLY,
    ),
    # Webhooks (the admin verb): the webhook "h" of jobs:q exists beforehand.
    "putWebhook": (
        lambda api, job, t: api.request("PUT", f"{_webhooked()}/h", _HOOK, as_=t),
        ADMIN_ONLY,
    ),
    "getWebhook": (lambda api, job, t: api.get(f"{_webhooked()}/h", as_=t), ADMIN_ONLY),
    "listWebhooks": (lambda api, job, t: api.get(_webhooked(), as_=t), ADMIN_ONLY),
    "rotateWebhookSecret": (
        lambda api, job, t: api.post(f"{_webhooked()}/h/rotate-secret", as_=t),
        ADMIN_ONLY,
    ),
    "deleteWebhook": (
        lambda api, job, t: api.request("DELETE", f"{_webhooked()}/h", as_=t),
        {**ADMIN_ONLY, "admin": 204},
    ),
}

CASES = [
    (route, persona, status)
    for route, (_, expected) in ROUTES.items()
    for persona, status in expected.items()
]


@pytest.mark.parametrize(("route", "persona", "status"), CASES)
def test_permission_matrix(
    api: Api, personas: Personas, route: str, persona: str, status: int
) -> None:
    # The lease, when a route needs one, is taken by the persona itself where it may pull,
    # so that a worker acks its own lease; others present the setup token's lease.
    setup = make_token("setup", "*=*,admin")
    job = push(api, setup, queue="jobs:q")
    token = None if persona == "none" else getattr(personas, persona)
    job["_setup"] = token if persona in ("worker", "admin") else setup
    before = Job.objects.count()
    call = ROUTES[route][0](api, job, token)
    assert call.status == status, call.body
    # Exactly one audit event per call, whoever answered it (a service on success, the
    # view on a refusal), naming the caller and the status it got.
    [event] = AuditEvent.objects.filter(request_id=call.headers["X-Request-ID"]).exclude(
        actor__startswith="system:"
    )
    assert (event.actor, event.status) == (
        "anonymous" if token is None else f"token:{persona}",
        status,
    )
    if status >= 400:
        assert call.headers["Content-Type"] == "application/problem+json"
        if route in ("push", "push batch", "pushFlow"):
            assert Job.objects.count() == before


def test_list_queues_for_a_stranger_does_not_include_jobs_queues(
    api: Api, personas: Personas
) -> None:
    push(api, personas.producer, queue="jobs:q")
    assert api.get("/queues", as_=personas.stranger).body == {"queues": []}


def test_the_schedule_verb_alone_may_not_put_or_trigger(api: Api) -> None:
    """PUT and trigger make jobs: ``schedule`` without ``push`` gets 403 on both (one
    denied event each, nothing made), while the routes that make no job let it in."""
    only = make_token("only-schedule", "jobs:*=schedule")
    prefix = _scheduled()
    before = Job.objects.count()
    for method, path in (
        ("PUT", f"{prefix}/s"),
        ("PUT", f"{prefix}/t"),
        ("POST", f"{prefix}/s/trigger"),
    ):
        call = api.request(method, path, _EVERY_MINUTE if method == "PUT" else None, as_=only)
        assert call.status == 403, (method, path, call.body)
        [event] = AuditEvent.objects.filter(request_id=call.headers["X-Request-ID"])
        assert (event.outcome, event.status) == ("denied", 403)
    assert Job.objects.count() == before
    assert [s.name for s in Schedule.objects.all()] == ["s"]
    assert api.get(f"{prefix}/s", as_=only).status == 200
    with_push = make_token("schedule-and-push", "jobs:*=schedule,push")
    assert api.request("PUT", f"{prefix}/s", _EVERY_MINUTE, as_=with_push).status == 200
    assert api.post(f"{prefix}/s/trigger", as_=with_push).status == 201
