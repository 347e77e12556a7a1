"""A real ASGI server (uvicorn, production settings) on the tests' own database, and an
SSE client that reads its event streams in a thread: for tests/test_event_stream.py and
the browser test."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from django.conf import settings
from django.db import connection

from queues.events.log import START, events_after
from queues.models import JobEvent

from .processes import database_url, free_port, manage, production_env, serve

ROOT = Path(settings.BASE_DIR)
UVICORN = [sys.executable, "-m", "uvicorn", "flashq_project.asgi:application", "--no-access-log"]


@dataclass(frozen=True)
class AsgiServer:
    url: str
    env: dict[str, str]

    def manage(self, *args: str) -> str:
        """``manage.py`` in the server's environment (its pepper, its database)."""
        return manage(self.env, *args).strip()

    def token(self, name: str, *rules: str) -> str:
        allow = [f"--allow={rule}" for rule in rules]
        return self.manage("create_token", name, *allow).splitlines()[-1]

    def call(self, method: str, path: str, token: str, body: Any = None) -> Any:
        response = httpx.request(
            method,
            f"{self.url}/api/v1{path}",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert response.status_code < 300, (response.status_code, response.text)
        return response.json() if response.content else None


def log_readable(timeout: float = 30) -> None:
    """Until the event log's reader sees every event written so far. On PostgreSQL it
    holds back while any older writing transaction runs anywhere on the server (other
    test runs on a shared one): a test that reads the log at once waits for that first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(events_after(START, limit=100_000)) >= JobEvent.objects.count():
            return
        time.sleep(0.05)


def _database_url() -> str:
    if connection.vendor == "postgresql":
        return database_url()
    return f"sqlite:///{connection.settings_dict['NAME']}"


@contextmanager
def asgi_server(tmp_path: Path, **overrides: str) -> Iterator[AsgiServer]:
    """uvicorn serving ``flashq_project.asgi`` on the tests' database (a transactional
    test's: it must see what they commit), stopped before the database is emptied."""
    port = free_port()
    env = production_env(
        database_url=_database_url(),
        static_root=tmp_path / "static",
        without=("EVENT_STREAM_", "LONG_POLL_"),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
        TMPDIR=str(tmp_path),
        **overrides,
    )
    (tmp_path / "metrics").mkdir(exist_ok=True)
    argv = [*UVICORN, "--host", "127.0.0.1", "--port", str(port)]
    with serve(argv, env=env, port=port, log=tmp_path / "uvicorn.log"):
        yield AsgiServer(f"http://127.0.0.1:{port}", env)


@dataclass
class Frame:
    event: str = "message"
    id: str | None = None
    data: Any = None
    comment: str | None = None
    retry: int | None = None


@dataclass
class Listener:
    """One SSE connection read in a thread: its status, raw text and parsed frames."""

    url: str
    headers: dict[str, str]
    status: int | None = None
    raw: list[str] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)
    ended: threading.Event = field(default_factory=threading.Event)
    opened: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Listener:
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        assert self.opened.wait(10), "the stream did not open"
        return self

    def _read(self) -> None:
        try:
            with httpx.stream(
                "GET", self.url, headers=self.headers, timeout=httpx.Timeout(30, read=30)
            ) as response:
                self.status = response.status_code
                self.opened.set()
                frame = Frame()
                for line in response.iter_lines():
                    if self._stop.is_set():
                        return
                    self.raw.append(line)
                    frame = self._parse(line, frame)
        except httpx.HTTPError:
            pass
        finally:
            self.opened.set()
            self.ended.set()

    def _parse(self, line: str, frame: Frame) -> Frame:
        if line == "":
            if frame != Frame():
                self.frames.append(frame)
            return Frame()
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "":
            frame.comment = value
        elif name == "id":
            frame.id = value
        elif name == "event":
            frame.event = value
        elif name == "data":
            frame.data = json.loads(value)
        elif name == "retry":
            frame.retry = int(value)
        return frame

    def events(self) -> list[Frame]:
        return [
            frame for frame in list(self.frames) if frame.comment is None and frame.retry is None
        ]

    def wait_for(self, found: Callable[[list[Frame]], bool], timeout: float = 20) -> list[Frame]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if found(self.events()):
                return self.events()
            time.sleep(0.05)
        raise AssertionError(f"not found in {timeout}s: {self.raw[-40:]}")

    def close(self) -> None:
        """Hang up (at the next line: a heartbeat at the latest)."""
        self._stop.set()
        self.ended.wait(10)


@contextmanager
def listening(
    server: AsgiServer, pattern: str, token: str, last_event_id: str | None = None
) -> Iterator[Listener]:
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    listener = Listener(f"{server.url}/api/v1/queues/{pattern}/events", headers).start()
    try:
        yield listener
    finally:
        listener.close()
