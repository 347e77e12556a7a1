"""The admin's live feed (admin/events/stream): a staff session's event stream of the
queues the user may view, opened with one audit event; the dashboard and the job list
load the script that listens to it. (The browser test shows a count changing.)"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client, override_settings

from compliance.models import AuditEvent
from kernel.limits import WEBHOOK_QUEUE
from queues import services
from queues.jobspec import JobSpec
from queues.models import JobEvent

from .eventstreams import log_readable
from .personas import logged_in, make_auditor, make_operator, make_staff, make_superuser
from .support import SETUP

# Transactional: on PostgreSQL a stream reads only transactions that have ended.
pytestmark = pytest.mark.django_db(transaction=True)
STREAM = "/admin/events/stream"


@pytest.fixture(autouse=True)
def _empty_log() -> None:
    JobEvent.objects.all().delete()


def _push(queue: str) -> str:
    spec = JobSpec(data={"to": "secret@example.com"})
    return str(services.job_push(queue_name=queue, spec=spec, owner="t", actor=SETUP).job.id)


def _events(client: Any, last_event_id: str) -> list[dict[str, Any]]:
    log_readable()  # the stream polls for a fraction of a second
    response = client.get(STREAM, HTTP_LAST_EVENT_ID=last_event_id)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/event-stream")
    text = b"".join(response.streaming_content).decode()
    assert "secret@example.com" not in text
    return [
        json.loads(line.removeprefix("data: "))
        for line in text.splitlines()
        if line.startswith("data: ") and "job_id" in line
    ]


@override_settings(EVENT_STREAM_HEARTBEAT_SECONDS=0.2)
def test_an_operator_hears_only_the_queues_they_may_view() -> None:
    olga = make_operator("olga", "mail")
    _push("mail")
    first = JobEvent.objects.get()
    mine, other = _push("mail"), _push("billing")
    heard = _events(logged_in(olga), f"{first.txid}-{first.id}")
    assert [event["job_id"] for event in heard] == [mine]
    assert other not in str(heard)
    [opened] = AuditEvent.objects.filter(action="subscribeEvents")
    assert opened.actor == "user:olga" and opened.details["queues"] == 1


@override_settings(EVENT_STREAM_HEARTBEAT_SECONDS=0.2)
def test_a_global_viewer_hears_every_queue() -> None:
    _push("mail")
    first = JobEvent.objects.get()
    later = _push("billing")
    heard = _events(logged_in(make_auditor()), f"{first.txid}-{first.id}")
    assert [event["job_id"] for event in heard] == [later]


@override_settings(EVENT_STREAM_HEARTBEAT_SECONDS=0.2)
def test_a_global_viewer_never_hears_the_engines_internal_queues() -> None:
    _push("mail")
    first = JobEvent.objects.get()
    _push(WEBHOOK_QUEUE)
    later = _push("billing")
    for viewer in (make_auditor(), make_superuser()):
        heard = _events(logged_in(viewer), f"{first.txid}-{first.id}")
        assert [event["job_id"] for event in heard] == [later], viewer
        assert WEBHOOK_QUEUE not in str(heard)


def test_staff_who_may_view_no_queue_and_strangers_get_no_stream() -> None:
    _push("mail")
    assert logged_in(make_staff()).get(STREAM).status_code == 403
    anonymous = Client().get(STREAM)
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]


def test_the_dashboard_and_the_job_list_load_the_live_script() -> None:
    client = logged_in(make_operator("olga", "mail"))
    for page in ("/admin/", "/admin/queues/job/"):
        html = client.get(page).content.decode()
        assert "queues/live.js" in html and f'data-stream="{STREAM}"' in html, page
