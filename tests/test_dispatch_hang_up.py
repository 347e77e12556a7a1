"""A client that hangs up while a waiting route's first thread (its DRF dispatch) still
runs: the view is cancelled but the thread goes on, and whatever it made is given back
once it ends. An event stream's long-poll slot is returned; a pull or a job wait that
was about to wait still gets its one audit event."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import transaction

from compliance.models import AuditEvent
from queues import jobwait, waitslots
from queues.api.event_views import QueueEventsApi
from queues.api.job_views import JobWaitApi
from queues.api.queue_views import QueuePullApi
from queues.models import JobEvent

from .asgicalls import AsgiCall, asgi_call
from .support import Api, clear_audit, make_token, push

# Transactional: the handler's threads use connections of their own.
pytestmark = pytest.mark.django_db(transaction=True)


class HeldDispatch:
    """The route's handler (or any function the call runs in a thread), made to stop
    once it has answered until ``let_go``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, view: Any, method: str) -> None:
        self.answered = threading.Event()
        self.let_go = threading.Event()
        self.returned = threading.Event()
        handler: Callable[..., Any] = getattr(view, method)

        def held(view_self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                answer = handler(view_self, *args, **kwargs)
                self.answered.set()
                assert self.let_go.wait(10)
                return answer
            finally:
                self.returned.set()

        monkeypatch.setattr(view, method, held)

    async def hang_up_meanwhile(self, call: AsgiCall) -> None:
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, self.answered.wait, 10)
        call.hang_up.set()
        await asyncio.sleep(0.3)  # the handler cancels the view
        self.let_go.set()


def _hang_up_during_dispatch(held: HeldDispatch, method: str, path: str, token: str) -> AsgiCall:
    body = json.dumps({"wait": 5}).encode() if method == "POST" else b""
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    call = asyncio.run(
        asgi_call(method, path, headers=headers, body=body, meanwhile=held.hang_up_meanwhile)
    )
    assert held.returned.wait(10)
    return call


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    JobEvent.objects.all().delete()
    monkeypatch.setattr(waitslots, "SLOTS", waitslots.WaitSlots())


def test_a_stream_whose_client_left_during_the_dispatch_gives_its_slot_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = make_token("watcher", "jobs:*=getJobs")
    held = HeldDispatch(monkeypatch, QueueEventsApi, "get")
    call = _hang_up_during_dispatch(held, "GET", "/api/v1/queues/jobs:*/events", token)
    assert not call.sent  # never answered: the client was gone
    assert waitslots.SLOTS.held() == 0
    assert AuditEvent.objects.filter(action="subscribeEvents").count() == 1


def test_a_pull_whose_client_left_before_it_waited_gets_its_one_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = make_token("worker", "jobs:*=push,pull")
    push(Api(), token, "jobs:empty")
    assert len(Api().post("/queues/jobs:empty/pull", {}, as_=token).body["jobs"]) == 1
    with transaction.atomic():  # its SET LOCAL needs a transaction
        clear_audit()
    held = HeldDispatch(monkeypatch, QueuePullApi, "post")
    _hang_up_during_dispatch(held, "POST", "/api/v1/queues/jobs:empty/pull", token)
    [event] = AuditEvent.objects.filter(action="pull")
    assert event.details == {"client": "disconnected"}
    assert waitslots.SLOTS.held() == 0


@pytest.mark.parametrize(
    ("held_in", "name"),
    [(JobWaitApi, "get"), (jobwait, "job_settled")],
    ids=["in-the-dispatch", "in-the-waits-first-read"],
)
def test_a_job_wait_whose_client_left_before_it_waited_gets_its_one_event(
    held_in: Any, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = make_token("waiter", "jobs:*=push,getJob")
    job = push(Api(), token)
    with transaction.atomic():  # its SET LOCAL needs a transaction
        clear_audit()
    held = HeldDispatch(monkeypatch, held_in, name)
    _hang_up_during_dispatch(held, "GET", f"/api/v1/jobs/{job['id']}/wait?timeout_ms=5000", token)
    [event] = AuditEvent.objects.filter(action="waitJob")
    assert event.details == {"finished": False}
    assert waitslots.SLOTS.held() == 0
