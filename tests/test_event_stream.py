"""GET /queues/{pattern}/events on a real ASGI server (uvicorn, production settings):
events arrive for a push, pull, progress, fail and ack, never with a payload, result,
error text or progress message; a pattern reaches only the queues where the token has
getJobs; Last-Event-ID resumes with exactly the missed events; a pruned gap is a
``reset``; heartbeats arrive; a revoked token's stream ends."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from compliance.models import AuditEvent
from queues.events.log import prune
from queues.models import JobEvent
from security.models import ApiToken, QueuePermission

from .eventstreams import AsgiServer, Frame, asgi_server, listening

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SECRET = "Zx9-never-in-a-stream"
#: What an event says, and all it says.
FIELDS = {"job_id", "queue", "state", "attempts", "progress", "error_code", "at"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[AsgiServer]:
    # On SQLite the flush between transactional tests logs ``removed`` for each job.
    JobEvent.objects.all().delete()
    with asgi_server(tmp_path, EVENT_STREAM_HEARTBEAT_SECONDS="1") as served:
        yield served


def _of(job_id: str, frames: list[Frame]) -> list[str]:
    return [frame.event for frame in frames if frame.data and frame.data.get("job_id") == job_id]


def test_a_jobs_life_arrives_as_events_without_its_payload(server: AsgiServer) -> None:
    token = server.token("life", "jobs:*=*")
    with listening(server, "jobs:*", token) as stream:
        assert stream.status == 200
        job = server.call(
            "POST",
            "/queues/jobs:a/jobs",
            token,
            {"data": {"card": SECRET}, "max_attempts": 2, "backoff": {"type": "fixed", "delay": 0}},
        )
        [held] = server.call("POST", "/queues/jobs:a/pull", token, {})["jobs"]
        server.call(
            "POST",
            f"/jobs/{job['id']}/fail",
            token,
            {"lease_id": held["lease_id"], "error": f"broke on {SECRET}"},
        )
        [held] = server.call("POST", "/queues/jobs:a/pull", token, {})["jobs"]
        progress = {"lease_id": held["lease_id"], "progress": 50, "message": SECRET}
        server.call("POST", f"/jobs/{job['id']}/progress", token, progress)
        ack = {"lease_id": held["lease_id"], "result": {"out": SECRET}}
        server.call("POST", f"/jobs/{job['id']}/ack", token, ack)
        frames = stream.wait_for(lambda frames: "completed" in _of(job["id"], frames))
    assert _of(job["id"], frames) == [
        "pushed",
        "active",
        "retried",
        "active",
        "progress",
        "completed",
    ]
    completed = frames[-1].data
    assert completed["queue"] == "jobs:a"
    assert (completed["state"], completed["attempts"], completed["progress"]) == (
        "completed",
        2,
        50,
    )
    assert set(completed) == FIELDS
    assert SECRET not in "\n".join(stream.raw)
    assert stream.raw[0].startswith("retry: ")


def test_a_pattern_reaches_only_the_queues_the_token_may_read(server: AsgiServer) -> None:
    admin = server.token("admin", "*=*")
    reader = server.token("reader", "jobs:a*=getJobs")
    with listening(server, "jobs:*", reader) as stream:
        hidden = server.call("POST", "/queues/jobs:b1/jobs", admin, {"data": {}})
        seen = server.call("POST", "/queues/jobs:a1/jobs", admin, {"data": {}})
        # A queue made after the stream opened is reached too.
        later = server.call("POST", "/queues/jobs:a2/jobs", admin, {"data": {}})
        frames = stream.wait_for(lambda frames: bool(_of(later["id"], frames)))
    assert _of(seen["id"], frames) == ["pushed"]
    assert not _of(hidden["id"], frames)
    assert {frame.data["queue"] for frame in frames} == {"jobs:a1", "jobs:a2"}
    assert "jobs:b1" not in "\n".join(stream.raw)


def test_a_pattern_with_no_readable_queue_is_refused(server: AsgiServer) -> None:
    server.token("admin", "*=*")
    pusher = server.token("pusher", "jobs:*=push")
    with listening(server, "jobs:*", pusher) as stream:
        stream.ended.wait(10)
    assert stream.status == 403


def test_resuming_after_a_disconnect_gets_exactly_the_missed_events(server: AsgiServer) -> None:
    token = server.token("resumer", "jobs:*=*")
    with listening(server, "jobs:*", token) as stream:
        first = server.call("POST", "/queues/jobs:r/jobs", token, {"data": {}})
        [seen] = stream.wait_for(lambda frames: bool(_of(first["id"], frames)))
    missed = [server.call("POST", "/queues/jobs:r/jobs", token, {"data": {}}) for _ in range(3)]
    with listening(server, "jobs:*", token, last_event_id=seen.id) as resumed:
        after = server.call("POST", "/queues/jobs:r/jobs", token, {"data": {}})
        frames = resumed.wait_for(lambda frames: bool(_of(after["id"], frames)))
    assert [frame.data["job_id"] for frame in frames] == [
        *(job["id"] for job in missed),
        after["id"],
    ]
    ids = [frame.id for frame in frames]
    assert len(set(ids)) == len(ids)
    event = AuditEvent.objects.filter(action="subscribeEvents").order_by("-id").first()
    assert event is not None
    assert event.details["resumed"] is True
    assert event.details["from"] == seen.id
    assert event.details["pattern"] == "jobs:*"


def test_a_gap_the_log_no_longer_covers_is_a_reset(server: AsgiServer) -> None:
    token = server.token("gap", "jobs:*=*")
    with listening(server, "jobs:*", token) as stream:
        first = server.call("POST", "/queues/jobs:g/jobs", token, {"data": {}})
        [seen] = stream.wait_for(lambda frames: bool(_of(first["id"], frames)))
    gone = server.call("POST", "/queues/jobs:g/jobs", token, {"data": {}})
    assert prune(now=timezone.now() + timedelta(days=1)) >= 2
    with listening(server, "jobs:*", token, last_event_id=seen.id) as resumed:
        after = server.call("POST", "/queues/jobs:g/jobs", token, {"data": {}})
        frames = resumed.wait_for(lambda frames: bool(_of(after["id"], frames)))
    assert frames[0].event == "reset"
    assert frames[0].data == {"reason": "pruned"}
    assert not _of(gone["id"], frames)
    for bad in ("not-a-cursor", "999999999-999999999"):
        with listening(server, "jobs:*", token, last_event_id=bad) as resumed:
            [reset] = resumed.wait_for(lambda frames: bool(frames))
        assert reset.event == "reset"


def test_heartbeats_arrive_and_a_revoked_tokens_stream_ends(server: AsgiServer) -> None:
    token = server.token("revoked", "jobs:*=*")
    with listening(server, "jobs:*", token) as stream:
        server.call("POST", "/queues/jobs:h/jobs", token, {"data": {}})
        stream.wait_for(lambda _: ": heartbeat" in stream.raw, timeout=10)
        assert not stream.ended.is_set()
        server.manage("revoke_token", "revoked")
        # The next heartbeat re-checks the token (the server remembers it for 1 s).
        assert stream.ended.wait(10), stream.raw[-10:]


def test_streams_count_toward_the_familys_waiter_cap(tmp_path: Path) -> None:
    JobEvent.objects.all().delete()
    with asgi_server(
        tmp_path, LONG_POLL_MAX_WAITERS_PER_FAMILY="1", EVENT_STREAM_HEARTBEAT_SECONDS="1"
    ) as capped:
        token = capped.token("capped", "jobs:*=getJobs")
        with listening(capped, "jobs:*", token) as first:
            assert first.status == 200
            with listening(capped, "jobs:*", token) as second:
                second.ended.wait(10)
            assert second.status == 503
            assert "too_many_streams" in second.raw[0]
        # The first stream's slot is given back once the server sees it hang up.
        for _ in range(20):
            with listening(capped, "jobs:*", token) as third:
                if third.status == 200:
                    break
            time.sleep(0.25)
        assert third.status == 200


def test_a_stream_resumed_while_jobs_pour_in_misses_none_and_repeats_none(
    server: AsgiServer,
) -> None:
    token = server.token("pour", "jobs:*=*")
    pushed: list[str] = []

    def pour() -> None:
        for _ in range(40):
            pushed.append(server.call("POST", "/queues/jobs:p/jobs", token, {"data": {}})["id"])

    with listening(server, "jobs:*", token) as whole:
        pouring = threading.Thread(target=pour)
        pouring.start()
        early = whole.wait_for(lambda frames: len(frames) >= 5)
        # Resumed from the fifth event while the pushes go on: catch-up, then live.
        with listening(server, "jobs:*", token, last_event_id=early[4].id) as resumed:
            pouring.join()
            frames = resumed.wait_for(lambda frames: len(frames) >= len(pushed) - 5)
            time.sleep(1)  # nothing more comes
            frames = resumed.events()
        everything = whole.wait_for(lambda frames: len(frames) >= len(pushed))
    assert [frame.data["job_id"] for frame in everything] == pushed
    assert [frame.data["job_id"] for frame in frames] == pushed[5:]


def test_a_rule_taken_away_stops_that_queues_events_at_the_next_heartbeat(
    server: AsgiServer,
) -> None:
    admin = server.token("admin", "*=*")
    reader = server.token("narrowed", "jobs:*=getJobs")
    with listening(server, "jobs:*", reader) as stream:
        before = server.call("POST", "/queues/jobs:secret/jobs", admin, {"data": {}})
        stream.wait_for(lambda frames: bool(_of(before["id"], frames)))
        token = ApiToken.objects.get(name="narrowed")
        QueuePermission.objects.create(
            token=token, pattern="jobs:secret", verbs="getJobs", effect="deny"
        )
        # The next heartbeat reads the token again (the server remembers it for 1 s).
        beats = stream.raw.count(": heartbeat")
        stream.wait_for(lambda _: stream.raw.count(": heartbeat") >= beats + 3, timeout=10)
        after = server.call("POST", "/queues/jobs:secret/jobs", admin, {"data": {}})
        still = server.call("POST", "/queues/jobs:open/jobs", admin, {"data": {}})
        frames = stream.wait_for(lambda frames: bool(_of(still["id"], frames)))
    assert not _of(after["id"], frames)
