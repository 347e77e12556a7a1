"""The event stream under WSGI (the test client, gunicorn's sync workers, runserver):
one heartbeat's worth of the log, polled, then the answer ends and the client resumes
with its Last-Event-ID; the same frames, the same filtering, the same resets."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import override_settings

from compliance.models import AuditEvent
from queues.models import JobEvent

from .eventstreams import log_readable
from .support import Api, make_token, push

# Transactional: on PostgreSQL a stream reads only transactions that have ended.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _empty_log() -> None:
    JobEvent.objects.all().delete()


def _frames(api: Api, pattern: str, token: str, **headers: Any) -> list[dict[str, Any]]:
    log_readable()  # the stream polls for a fraction of a second
    response = api.client.get(
        f"/api/v1/queues/{pattern}/events", HTTP_AUTHORIZATION=f"Bearer {token}", **headers
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/event-stream")
    assert (response["Cache-Control"], response["X-Accel-Buffering"]) == ("no-cache", "no")
    text = b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]
    frames = []
    for block in text.split("\n\n"):
        frame: dict[str, Any] = {}
        for line in block.splitlines():
            name, _, value = line.partition(":")
            frame[name or "comment"] = value.strip()
        if frame:
            frames.append(frame)
    return frames


def _cursor_of(job_id: str) -> str:
    event = JobEvent.objects.get(job_id=job_id, kind="pushed")
    return f"{event.txid}-{event.id}"


@override_settings(EVENT_STREAM_HEARTBEAT_SECONDS=0.3)
def test_a_polled_stream_resumes_filters_and_ends_with_a_heartbeat(api: Api) -> None:
    admin = make_token("admin", "*=*")
    reader = make_token("reader", "jobs:a*=getJobs")
    first = push(api, admin, queue="jobs:a1")
    start = _frames(api, "jobs:*", reader)
    assert start[0] == {"retry": "3000"} and start[-1] == {"comment": "heartbeat"}
    hidden = push(api, admin, queue="jobs:b1", data={"secret": "Qq-not-here"})
    seen = push(api, admin, queue="jobs:a1", data={"secret": "Qq-not-here"})
    events = _frames(api, "jobs:*", reader, HTTP_LAST_EVENT_ID=_cursor_of(first["id"]))
    data = [json.loads(frame["data"]) for frame in events if frame.get("event") == "pushed"]
    assert [item["job_id"] for item in data] == [seen["id"]]
    assert hidden["id"] not in str(events) and "Qq-not-here" not in str(events)
    opened = AuditEvent.objects.filter(action="subscribeEvents").order_by("id").last()
    assert opened is not None and opened.details["resumed"] is True


@override_settings(EVENT_STREAM_HEARTBEAT_SECONDS=0.1)
def test_an_id_the_log_does_not_cover_starts_with_a_reset(api: Api) -> None:
    admin = make_token("admin", "*=*")
    push(api, admin, queue="jobs:a1")
    for last_event_id, reason in (
        ("0-0", "pruned"),
        ("x", "invalid"),
        ("99999999999-1", "unknown"),
    ):
        frames = _frames(api, "jobs:*", admin, HTTP_LAST_EVENT_ID=last_event_id)
        assert frames[1]["event"] == "reset"
        assert json.loads(frames[1]["data"]) == {"reason": reason}


def test_only_get_opens_a_stream(api: Api) -> None:
    admin = make_token("admin", "*=*")
    for method in ("HEAD", "POST"):
        call = api.request(method, "/queues/jobs:*/events", as_=admin)
        assert call.status == 405, method
    assert not AuditEvent.objects.filter(action="subscribeEvents", status=200).exists()
