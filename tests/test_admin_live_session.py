"""The admin's live stream (queues.admin.livestream) under ASGI, where it stays open:
at every heartbeat it asks whether its session still logs the user in, as Django's
auth asks at each request, and ends once it does not (logged out, expired, password
changed, no longer active staff). While the session holds, it goes on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.test import override_settings
from django.utils import timezone

from queues.models import JobEvent

from .asgicalls import AsgiCall, asgi_call
from .personas import StaffClient, logged_in, make_auditor

pytestmark = pytest.mark.django_db(transaction=True)


def _log_out(client: StaffClient) -> None:
    client.logout()


def _expire(client: StaffClient) -> None:
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    Session.objects.filter(pk=key).update(expire_date=timezone.now() - timedelta(seconds=1))


def _change_password(client: StaffClient) -> None:
    client.user.set_password("an entirely new one 42!")
    client.user.save()


def _demote(client: StaffClient) -> None:
    client.user.is_staff = False
    client.user.save()


def _deactivate(client: StaffClient) -> None:
    client.user.is_active = False
    client.user.save()


def _nothing(client: StaffClient) -> None:
    pass


def _stream_then(change: Callable[[StaffClient], Any]) -> tuple[AsgiCall, bool]:
    """Open the stream, wait for a heartbeat, ``change`` the session or the user, then
    wait up to 5 s: the call, and whether the stream ended by itself."""
    JobEvent.objects.all().delete()
    client = logged_in(make_auditor())
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    ended = False

    async def meanwhile(call: AsgiCall) -> None:
        nonlocal ended
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while b": heartbeat" not in call.body:
            assert loop.time() < deadline, ("no heartbeat", call.sent)
            await asyncio.sleep(0.05)
        await loop.run_in_executor(None, change, client)
        deadline = loop.time() + 5
        while loop.time() < deadline and not call.ended:
            await asyncio.sleep(0.05)
        ended = call.ended

    call = asyncio.run(
        asgi_call("GET", "/admin/events/stream", headers={"cookie": cookie}, meanwhile=meanwhile)
    )
    return call, ended


@override_settings(EVENT_STREAM_HEARTBEAT_SECONDS=0.3)
@pytest.mark.parametrize(
    "change", [_log_out, _expire, _change_password, _demote, _deactivate], ids=lambda f: f.__name__
)
def test_the_stream_ends_at_the_heartbeat_once_the_session_no_longer_logs_in(
    change: Callable[[StaffClient], Any],
) -> None:
    call, ended = _stream_then(change)
    assert call.sent[0]["status"] == 200
    assert ended, "the stream went on"


@override_settings(EVENT_STREAM_HEARTBEAT_SECONDS=0.3)
def test_while_the_session_holds_the_stream_goes_on() -> None:
    call, ended = _stream_then(_nothing)
    assert call.sent[0]["status"] == 200
    assert not ended
    assert call.body.count(b": heartbeat") >= 5
