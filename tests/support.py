"""Test support: an API client that talks to the real stack (auth, permissions, audit,
database), token making, push/pull shortcuts and the audit reset. The personas are in
tests/personas.py."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from django.conf import settings
from django.core.signals import request_finished
from django.db import close_old_connections, connection
from rest_framework.test import APIClient

from compliance.audit import Actor
from queues.models import Job, JobDependency, JobState, Queue
from security.services import parse_rule, token_create

T = TypeVar("T")

#: The actor of what tests set up through services.
SETUP = Actor.command("test-setup")


@dataclass
class Call:
    status: int
    body: Any
    headers: Any


class Api:
    """``api.post("/queues/q/jobs", {...}, as_=token)`` -> Call(status, body, headers)."""

    prefix = "/api/v1"

    def __init__(self) -> None:
        self.client = APIClient()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        as_: str | None,
        content_type: str = "application/json",
        raw: str | None = None,
    ) -> Call:
        headers: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {as_}"} if as_ else {}
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        url = self.prefix + path if path.startswith(("/queues", "/jobs", "/me")) else path
        response = self.client.generic(
            method, url, data or "", content_type=content_type, **headers
        )
        if response.streaming:  # an event stream: opened, then closed unread
            _close_unread(response)
            return Call(response.status_code, None, response.headers)
        try:
            parsed = json.loads(response.content) if response.content else None
        except ValueError:
            parsed = response.content
        return Call(response.status_code, parsed, response.headers)

    def get(self, path: str, *, as_: str | None) -> Call:
        return self.request("GET", path, as_=as_)

    def post(self, path: str, body: Any = None, *, as_: str | None, **kwargs: Any) -> Call:
        return self.request("POST", path, body, as_=as_, **kwargs)

    def patch(self, path: str, body: Any = None, *, as_: str | None) -> Call:
        return self.request("PATCH", path, body, as_=as_)


def _close_unread(response: Any) -> None:
    """Close a streaming answer as the test client closes one it streamed: without the
    end-of-request handler that would close the test's database connection."""
    request_finished.disconnect(close_old_connections)
    try:
        response.close()
    finally:
        request_finished.connect(close_old_connections)


def make_token(name: str, *allow: str, deny: tuple[str, ...] = ()) -> str:
    rules = [parse_rule(text, allow=True) for text in allow]
    rules += [parse_rule(text, allow=False) for text in deny]
    _, raw = token_create(name=name, rules=rules, actor=SETUP)
    return raw


def push(api: Api, token: str, queue: str = "jobs:q", **fields: Any) -> dict[str, Any]:
    fields.setdefault("data", {"n": 1})
    call = api.post(f"/queues/{queue}/jobs", fields, as_=token)
    assert call.status in (200, 201), call.body
    return dict(call.body)


def pull(api: Api, token: str, queue: str = "jobs:q", **fields: Any) -> list[dict[str, Any]]:
    call = api.post(f"/queues/{queue}/pull", fields, as_=token)
    assert call.status == 200, call.body
    return list(call.body["jobs"])


ON_POSTGRES = settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
postgres_only = pytest.mark.skipif(
    not ON_POSTGRES, reason="needs PostgreSQL: run the suite with DATABASE_URL=postgres://..."
)


def clear_audit() -> None:
    """Test set-up only: empty the audit trail so a test sees just its own events. The
    models refuse this, and so do PostgreSQL's triggers, which a superuser (the test
    database's owner here) switches off for the one statement."""
    with connection.cursor() as cursor:
        if ON_POSTGRES:
            cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("DELETE FROM compliance_auditevent")
        if ON_POSTGRES:
            cursor.execute("SET LOCAL session_replication_role = origin")


def job_in(queue: str, **fields: Any) -> Job:
    """A job made with the ORM (queue created if need be), for engine tests that build
    flows without the flows API."""
    fields.setdefault("data", {"n": 1})
    return Job.objects.create(queue=Queue.objects.get_or_create(name=queue)[0], **fields)


def waits_for(job: Job, *targets: Job, kind: str = "child", **fields: Any) -> Job:
    """Make ``job`` wait for ``targets`` as a flow's parent does for its children (or,
    with kind="dependency", as a push with depends_on): JobDependency rows, targets
    watched, ``job`` in waiting-children (``fields``: more of its columns). Returns
    ``job`` as stored."""
    JobDependency.objects.bulk_create(
        [JobDependency(job=job, depends_on=target, kind=kind) for target in targets]
    )
    Job.objects.filter(id__in=[target.id for target in targets]).update(watched=True)
    Job.objects.filter(id=job.id).update(state=JobState.WAITING_CHILDREN, **fields)
    job.refresh_from_db()
    return job


def in_a_thread(work: Callable[[], T]) -> T:
    """``work`` done by another client, in a thread of its own (its own connection,
    closed after): for code that runs on an async view's event loop, where the
    database may not be used, or that must not share the caller's transaction."""
    done: list[T] = []

    def run() -> None:
        try:
            done.append(work())
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)
    assert done, "the work in a thread failed or did not finish"
    return done[0]
