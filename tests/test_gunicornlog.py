"""gunicorn's logs as deploy/gunicorn.conf.py sets them up: no card number a client put
in the request reaches them (flashq_project.gunicornlog). Access lines are rendered by
the configured logger class from fake request and response objects, as gunicorn's own
tests do."""

from __future__ import annotations

import datetime
import runpy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote_plus

import pytest
from django.conf import settings
from gunicorn.config import Config  # type: ignore[import-untyped]

from security.cards import card_numbers_in, mask_card_numbers

CONF = Path(settings.BASE_DIR) / "deploy" / "gunicorn.conf.py"
REQUEST_ID = "0190a3c4-5e6f-7abc-8def-0123456789ab"
#: A test Visa number as a careless client might put it in a queue name.
CARDS = ("4111111111111111", "4111-1111-1111-1111")
MASKED = "411111******1111"

Render = Callable[..., str]


@dataclass(frozen=True)
class GunicornLogs:
    logger: Any  # the logger class deploy/gunicorn.conf.py names, set up as gunicorn does
    access: Path
    error: Path


@pytest.fixture
def make_logs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """A logger of the deploy's class and access log format (or ``format``), writing to
    files of its own."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    conf = runpy.run_path(str(CONF))
    made: list[GunicornLogs] = []

    def make(format: str | None = None) -> GunicornLogs:
        access, error = tmp_path / f"access-{len(made)}.log", tmp_path / f"error-{len(made)}.log"
        cfg = Config()
        cfg.set("logger_class", conf.get("logger_class", "gunicorn.glogging.Logger"))
        cfg.set("access_log_format", format or conf["access_log_format"])
        cfg.set("accesslog", str(access))
        cfg.set("errorlog", str(error))
        made.append(GunicornLogs(cfg.logger_class(cfg), access, error))
        return made[-1]

    yield make
    for logs in made:
        for log in (logs.logger.access_log, logs.logger.error_log):
            for handler in list(log.handlers):
                log.removeHandler(handler)
                handler.close()


@pytest.fixture
def render(make_logs: Callable[..., GunicornLogs]) -> Render:
    """Renders one access line for a request to ``path``."""

    def access_line(
        path: str,
        *,
        raw_uri: str | None = None,
        query: str = "",
        headers: tuple[tuple[str, str], ...] = (),
        format: str | None = None,
    ) -> str:
        logs = make_logs(format)
        environ = {
            "REQUEST_METHOD": "POST",
            "RAW_URI": raw_uri or (f"{path}?{query}" if query else path),
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "192.0.2.7",
            **{f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers},
        }
        response = SimpleNamespace(
            status="422 Unprocessable Content", sent=120, headers=[("X-Request-ID", REQUEST_ID)]
        )
        request = SimpleNamespace(headers=list(headers))
        logs.logger.access(response, request, environ, datetime.timedelta(milliseconds=3))
        return logs.access.read_text()

    return access_line


def assert_no_card(line: str) -> None:
    for card in CARDS:
        assert card not in line, line
    assert card_numbers_in(line) == [], line
    assert card_numbers_in(unquote_plus(line)) == [], line


@pytest.mark.parametrize("card", CARDS)
def test_a_card_number_in_the_path_is_written_masked(render: Render, card: str) -> None:
    line = render(f"/api/v1/queues/{card}/jobs")
    assert_no_card(line)
    assert line == f'192.0.2.7 "POST /api/v1/queues/{MASKED}/jobs" 422 120 3ms "{REQUEST_ID}"\n'


def test_two_card_numbers_in_one_path_are_both_masked(render: Render) -> None:
    line = render("/api/v1/queues/4111111111111111/jobs/5500-0000-0000-0004")
    assert_no_card(line)
    assert f"/api/v1/queues/{MASKED}/jobs/550000******0004" in line


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/queues/orders/jobs",
        f"/api/v1/jobs/{REQUEST_ID}/ack",
        "/api/v1/jobs/0190a3c4-5e6f-7abc-8def-012345678901/ack",  # all-digit last group
        "/api/v1/queues/4111111111111112/jobs",  # fails the Luhn check: not a card
        "/api/v1/queues/reports-20261206120000/jobs",
    ],
)
def test_a_path_without_a_card_number_is_written_as_sent(render: Render, path: str) -> None:
    line = render(path)
    assert line == f'192.0.2.7 "POST {path}" 422 120 3ms "{REQUEST_ID}"\n'


def test_every_atom_a_client_writes_is_masked_whatever_the_format(render: Render) -> None:
    """An operator's own format: the raw request line (percent-encoded as sent), the
    query, the Referer, any header, the environ."""
    line = render(
        "/api/v1/queues/4111111111111111/jobs",
        raw_uri="/api/v1/queues/%34111111111111111%0Aforged/jobs?card=4111+1111+1111+1111",
        query="card=4111+1111+1111+1111",
        headers=(
            ("Referer", "https://flashq.example.com/admin/queues/job/?q=4111-1111-1111-1111"),
            ("X-Client-Note", "4111 1111 1111 1111"),
        ),
        format=(
            '"%(r)s" %(U)s %(q)s "%(f)s" "%(a)s" %({x-client-note}i)s %({raw_uri}e)s'
            " %({query_string}e)s %(s)s"
        ),
    )
    assert_no_card(line)
    assert line.count("\n") == 1  # a decoded %0A is written back encoded: no forged line
    assert f"/api/v1/queues/{MASKED}%0Aforged/jobs" in line
    assert line.endswith(" 422\n")


def test_a_card_number_glued_to_a_uuid_takes_the_whole_value_with_it() -> None:
    # The check reads a UUID as a separator, so this is a card number; masking in place
    # cannot reach it, and the value is written as [redacted].
    text = f"/api/v1/jobs/{REQUEST_ID}4111111111111111/ack"
    assert card_numbers_in(text) == ["4111111111111111"]
    assert mask_card_numbers(text) == "[redacted]"


def test_the_error_log_masks_a_request_line_it_quotes(
    make_logs: Callable[..., GunicornLogs],
) -> None:
    logs = make_logs()
    # As gunicorn's workers write them (workers/base.py, handle_error).
    logs.logger.warning(
        "Invalid request from ip=192.0.2.7: Invalid HTTP request line: "
        "'GET /api/v1/queues/4111-1111-1111-1111/jobs'"
    )
    logs.logger.exception("Error handling request %s", "/api/v1/queues/%34111111111111111/jobs")
    logs.logger.info("Booting worker with pid: %s", 4242)
    text = logs.error.read_text()
    assert_no_card(text)
    assert f"Invalid HTTP request line: 'GET /api/v1/queues/{MASKED}/jobs'" in text
    assert f"Error handling request /api/v1/queues/{MASKED}/jobs" in text
    assert "Booting worker with pid: 4242" in text
