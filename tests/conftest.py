"""Fixtures; the helpers themselves live in tests/support.py."""

from __future__ import annotations

import pytest
from django.test import Client

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
