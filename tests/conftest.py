"""Fixtures; the helpers themselves live in tests/support.py, the personas in
tests/personas.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections
from django.test import Client
from hypothesis import HealthCheck, settings

from .browsers import CHROMIUM
from .personas import (
    Personas,
    StaffClient,
    logged_in,
    make_auditor,
    make_full_token,
    make_operator,
    make_staff,
    make_superuser,
    token_personas,
)
from .support import Api

# Property tests check what holds, not how fast: speed is bench/'s business. On a loaded
# 2-core CI machine, Hypothesis's own clocks (its per-example deadline and its check that
# inputs are generated quickly) failed tests whose properties held.
settings.register_profile("flashq", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("flashq")


@pytest.fixture(scope="session", autouse=True)
def _notifier_closed_before_the_database_is_dropped(django_db_setup: None) -> Iterator[None]:
    """Waits on PostgreSQL start this process's listener (queues.notifier), whose two
    sessions would keep the test database from being dropped."""
    yield
    from queues.notifier import close_notifier

    close_notifier()


@pytest.fixture(autouse=True)
def _no_wait_slot_left_from_before() -> None:
    """Wait slots are counted per process (queues.waitslots), and a live server's
    threads run in this one: an event stream that an earlier test's browser left open
    ends within a heartbeat or so, after that test. Let it end before a test that counts
    slots starts; one still held after that is a leak, named here."""
    from queues import waitslots

    deadline = time.monotonic() + 10
    while waitslots.SLOTS.held() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert waitslots.SLOTS.held() == 0, "an earlier test left wait slots held"


@pytest.fixture
def api() -> Api:
    return Api()


@pytest.fixture
def personas(db: None) -> Personas:
    return token_personas()


@pytest.fixture
def full(db: None) -> str:
    """A token with every verb on every queue (admin included)."""
    return make_full_token()


@pytest.fixture
def root(db: None) -> Client:
    """The admin's superuser, logged in, calling from 192.0.2.10 (an address tests look
    for in audit events)."""
    return logged_in(make_superuser(), REMOTE_ADDR="192.0.2.10")


@pytest.fixture
def superuser(db: None) -> StaffClient:
    """The superuser persona ("root"), logged in (the user is ``.user``). ``root`` is
    the same user calling from a fixed address: a test takes one or the other."""
    return logged_in(make_superuser())


@pytest.fixture
def operator(db: None) -> StaffClient:
    """The operator persona ("olga", in Operators, granted the queue jobs:q), logged in."""
    return logged_in(make_operator())


@pytest.fixture
def auditor(db: None) -> StaffClient:
    """The auditor persona ("audrey", in Auditors), logged in."""
    return logged_in(make_auditor())


@pytest.fixture
def staff(db: None) -> StaffClient:
    """The staff persona ("nemo": staff, no group, no rights), logged in."""
    return logged_in(make_staff())


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless chromium, for the tests marked with tests.browsers.BROWSER_MARKS."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            yield chromium
        finally:
            chromium.close()
            # Code run while Playwright's loop is up gets connections of its own (Django
            # keys them by context): close them, or the test database cannot be dropped.
            connections.close_all()
