"""Fixtures; the helpers themselves live in tests/support.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections
from django.test import Client

from .browsers import CHROMIUM
from .support import Api, Personas, make_token, superuser_client


@pytest.fixture
def api() -> Api:
    return Api()


@pytest.fixture
def personas(db: None) -> Personas:
    return Personas(
        producer=make_token("producer", "jobs:*=push,getJob,cancel"),
        worker=make_token("worker", "jobs:*=pull,ack,fail,progress"),
        admin=make_token("admin", "*=*,admin"),
        stranger=make_token("stranger", "other:*=*"),
    )


@pytest.fixture
def full(db: None) -> str:
    """A token with every verb on every queue (admin included)."""
    return make_token("full", "*=*,admin")


@pytest.fixture
def root(db: None) -> Client:
    """The admin's superuser, logged in, calling from 192.0.2.10 (an address tests look
    for in audit events)."""
    return superuser_client(REMOTE_ADDR="192.0.2.10")


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
