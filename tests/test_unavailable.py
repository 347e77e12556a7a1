"""A database that is down is not a bug in the request: the API answers 503
problem+json with Retry-After, /readyz says not ready, and the refusal still reaches
the audit log (marked as not persisted). The database is made unreachable for real:
the connection is pointed at a closed port (PostgreSQL) or an unopenable file (SQLite)."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator

import pytest
from django.db import connection
from django.test import Client

from .support import Api, make_token


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again once we return


@pytest.fixture
def token(transactional_db: None) -> str:
    return make_token("svc", "*=*,admin")


@pytest.fixture
def database_down(token: str) -> Iterator[None]:
    saved = dict(connection.settings_dict)
    connection.close()
    if connection.vendor == "postgresql":
        connection.settings_dict["PORT"] = str(_closed_port())
    else:
        connection.settings_dict["NAME"] = "/nonexistent-flashq-dir/db.sqlite3"
    yield
    connection.close()
    connection.settings_dict.clear()
    connection.settings_dict.update(saved)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/queues/q/jobs", {"data": {}}),
        ("POST", "/queues/q/pull", {"wait": 1}),
        ("GET", "/queues", None),
    ],
)
def test_the_api_answers_503_with_retry_after_while_the_database_is_down(
    api: Api,
    token: str,
    database_down: None,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    body: object,
) -> None:
    logger = logging.getLogger("flashq.audit")
    logger.addHandler(caplog.handler)
    try:
        call = api.request(method, path, body, as_=token)
    finally:
        logger.removeHandler(caplog.handler)
    assert call.status == 503, call.body
    assert call.headers["Content-Type"] == "application/problem+json"
    assert call.body["code"] == "service_unavailable"
    assert int(call.headers["Retry-After"]) > 0
    assert "5432" not in json.dumps(call.body) and "sqlite" not in json.dumps(call.body)
    [line] = [json.loads(r.getMessage()) for r in caplog.records if r.name == "flashq.audit"]
    assert (line["status"], line["persisted"]) == (503, False)
    assert line["request_id"] == call.headers["X-Request-ID"]


def test_readyz_says_not_ready_while_the_database_is_down(database_down: None) -> None:
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert Client().get("/healthz").status_code == 200


def test_the_api_recovers_when_the_database_comes_back(api: Api, token: str) -> None:
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict["NAME" if connection.vendor == "sqlite" else "PORT"] = (
        "/nonexistent-flashq-dir/db.sqlite3"
        if connection.vendor == "sqlite"
        else str(_closed_port())
    )
    assert api.get("/queues", as_=token).status == 503
    connection.close()
    connection.settings_dict.update(saved)
    assert api.get("/queues", as_=token).status == 200
