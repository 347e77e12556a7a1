"""The admin under the production server as deployed: gunicorn with
deploy/gunicorn.conf.py, production settings, DEBUG off, static files collected and
served by whitenoise (hashed names, compressed, cached for a year), not by Django's
development helpers; and what its access log writes."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings

from security.cards import card_numbers_in

from .processes import GUNICORN, free_port, production_env, serve

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Server:
    url: str
    log: Path  # gunicorn's output: its access log and its error log
    token: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("prod")
    port = free_port()
    env = production_env(
        database_url=f"sqlite:///{root / 'db.sqlite3'}",
        static_root=root / "static",
        without=("GUNICORN_",),
        GUNICORN_BIND=f"127.0.0.1:{port}",
        GUNICORN_WORKERS="1",
        PROMETHEUS_MULTIPROC_DIR=str(root / "metrics"),
        TMPDIR=str(root),  # where deploy/gunicorn.conf.py makes its scratch directory
    )
    manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]
    for command in (["migrate", "-v", "0"], ["collectstatic", "--noinput", "-v", "0"]):
        subprocess.run([*manage, *command], env=env, check=True, cwd=settings.BASE_DIR)
    created = subprocess.run(
        [*manage, "create_token", "prod", "--allow", "*=*"],
        env=env,
        check=True,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
    )
    with serve(GUNICORN, env=env, port=port, log=root / "gunicorn.log") as served:
        yield Server(served.url, served.log, created.stdout.strip().splitlines()[-1])


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
        # Header names are case-insensitive (uvicorn sends whitenoise's in lower case).
        headers = {name.title(): value for name, value in response.headers.items()}
        return response.status, headers, response.read()


def test_the_admin_login_page_is_styled_by_collected_static_files(server: Server) -> None:
    status, _, body = _get(f"{server.url}/admin/login/")
    assert status == 200
    match = re.search(rb'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', body)
    assert match, "the admin links its stylesheet by a hashed (collected) name"
    status, headers, css = _get(server.url + match.group(1).decode())
    assert status == 200 and headers["Content-Type"].startswith("text/css")
    assert "max-age=315360000" in headers["Cache-Control"] and b"body" in css


def test_debug_is_off(server: Server) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        _get(f"{server.url}/no-such-page/")
    assert caught.value.code == 404
    assert b"Django" not in caught.value.read()  # no debug page


def _push(server: Server, queue: str) -> int:
    request = urllib.request.Request(  # noqa: S310
        f"{server.url}/api/v1/queues/{queue}/jobs",
        data=json.dumps({"data": {"n": 1}}).encode(),
        headers={"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as refused:
        return refused.code


def test_a_card_number_in_the_path_stays_out_of_the_access_log(server: Server) -> None:
    """A careless client's card number as a queue name: refused (422), nothing stored,
    and gunicorn's access log keeps at most its first 6 and last 4 digits."""
    cards = ("4111111111111111", "4111-1111-1111-1111")
    for card in cards:
        assert _push(server, card) == 422

    def access_lines() -> list[str]:
        # Not the audit trail's JSON lines, which go to the same output.
        text = server.log.read_text()
        return [line for line in text.splitlines() if '"POST /api/v1/queues/' in line]

    deadline = time.monotonic() + 10  # gunicorn writes the line once the response is out
    while len(access_lines()) < len(cards):
        assert time.monotonic() < deadline, f"no access lines: {server.log.read_text()[-2000:]}"
        time.sleep(0.1)
    for line in access_lines():
        assert '"POST /api/v1/queues/411111******1111/jobs" 422' in line
        assert card_numbers_in(line) == []
    for card in cards:
        assert card not in server.log.read_text()


def test_a_card_number_in_a_request_line_the_server_refuses_stays_out_of_its_logs(
    server: Server,
) -> None:
    """A request line without its HTTP version: answered 400 (by uvicorn's parser, or by
    the app for the missing host), and nothing in the server's logs holds the number."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(b"GET /api/v1/queues/4111-1111-1111-1111/jobs\r\nHost: x\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.1 400")
    deadline = time.monotonic() + 10
    while not re.search(r"Invalid HTTP request received|/jobs\" 400 ", server.log.read_text()):
        assert time.monotonic() < deadline, server.log.read_text()[-2000:]
        time.sleep(0.1)
    text = server.log.read_text()
    assert "4111-1111-1111-1111" not in text and card_numbers_in(text) == []


def test_each_worker_settles_its_heap_once_the_app_is_loaded(server: Server) -> None:
    """The loaded app's objects are frozen out of the garbage collector's sight, so no
    full collection walks them while requests wait (flashq_project.asgiserver)."""
    settled = re.findall(r"Heap settled: (\d+) objects", server.log.read_text())
    assert len(settled) == 1, server.log.read_text()[-2000:]  # GUNICORN_WORKERS=1
    assert int(settled[0]) > 50_000  # a loaded Django app, not a handful
