"""The client's tests run against the real server: a scratch PostgreSQL database,
migrated, and gunicorn with production settings (gthread, 2 workers x 4 threads) on a
free port, as tests/test_scale_out.py in the server's own suite does. The whole
directory is skipped, with the reason, when PostgreSQL or the server cannot be had."""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flashq_client import AsyncClient, Client, Worker

#: The server's repository: clients/python/tests/ -> the root that holds manage.py.
REPO = Path(__file__).resolve().parents[3]
#: The PostgreSQL server to make the scratch database on (any database in the URL is
#: ignored); DATABASE_URL is used when it names PostgreSQL.
DEFAULT_PG = "postgres://postgres@127.0.0.1:5432/postgres"
HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that needs the ``server`` fixture, directly or through another, starts the
    real gunicorn: it is ``e2e`` (``dev.py test --fast`` skips it); the client's own
    rules, tested without a server, stay in the fast loop. The hook sees the whole
    session's items, the server's suite too: only this directory's are marked."""
    for item in items:
        uses_server = "server" in getattr(item, "fixturenames", ())
        if uses_server and item.path.resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.e2e)


@dataclass(frozen=True)
class Server:
    url: str  # http://127.0.0.1:PORT
    # Not in repr: pytest prints fixtures' values when a test fails.
    # reveal too: the tests read the error texts workers write (masked without it).
    token: str = field(repr=False)  # '*=*,admin,reveal,erase'
    other_token: str = field(repr=False)  # the same rights, another token family
    env: dict[str, str] = field(repr=False)  # the server's settings, secrets, database
    log: Path  # gunicorn's output: its errors and the flashq.audit lines

    def client(self, **kwargs: Any) -> Client:
        return Client(self.url, kwargs.pop("token", self.token), **kwargs)

    def async_client(self, **kwargs: Any) -> AsyncClient:
        """An ``AsyncClient``: make it in the event loop that uses it (``async with``)."""
        return AsyncClient(self.url, kwargs.pop("token", self.token), **kwargs)

    def worker_env(self) -> dict[str, str]:
        """The environment of a worker process: the token, and nothing of the server's."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("FLASHQ_", "DJANGO_", "DATABASE_"))
        }
        env["FLASHQ_TOKEN"] = self.token
        env["FLASHQ_URL"] = self.url
        return env


def _pg_params() -> dict[str, Any]:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        url = os.environ.get("FLASHQ_CLIENT_TEST_PG", DEFAULT_PG)
    parts = urllib.parse.urlsplit(url)
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 5432,
        "user": urllib.parse.unquote(parts.username or "postgres"),
        "password": urllib.parse.unquote(parts.password) if parts.password else None,
    }


def _admin(params: dict[str, Any]) -> Any:
    import psycopg

    return psycopg.connect(**params, dbname="postgres", autocommit=True, connect_timeout=3)


def _database_url(params: dict[str, Any], name: str) -> str:
    quote = urllib.parse.quote
    credentials = quote(params["user"], safe="")
    if params["password"]:
        credentials += ":" + quote(params["password"], safe="")
    return f"postgres://{credentials}@{params['host']}:{params['port']}/{name}"


def _run(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(  # noqa: S603 - our own interpreter and manage.py
        [sys.executable, str(REPO / "manage.py"), *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"manage.py {args[0]} failed: {done.stderr[-2000:]}"
    return done.stdout


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if not (REPO / "manage.py").is_file():
        pytest.skip(f"the flashQ server is not at {REPO}")
    gunicorn = Path(sys.executable).parent / "gunicorn"
    if not gunicorn.is_file():
        pytest.skip(
            "gunicorn is not installed beside this interpreter (pip install -r requirements.txt)"
        )
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install -r requirements.txt)")
    params = _pg_params()
    try:
        admin = _admin(params)
    except Exception as exc:  # psycopg.OperationalError, refused, timed out...
        pytest.skip(f"PostgreSQL is not reachable at {params['host']}:{params['port']}: {exc}")
    name = f"flashq_client_{secrets.token_hex(6)}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    root = tmp_path_factory.mktemp("flashq-server")
    (root / "static").mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "FLASHQ_")) and key != "PRINCIPAL_CACHE_SECONDS"
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "flashq_project.settings.production",
            "DATABASE_URL": _database_url(params, name),
            "SECRET_KEY": secrets.token_urlsafe(50),
            "TOKEN_PEPPER": secrets.token_urlsafe(32),
            "ENCRYPTION_KEYS": "k1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
            "AUDIT_CHAIN_KEY": "a1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "false",
            "STATIC_ROOT": str(root / "static"),
        }
    )
    # The one helper that starts, waits for and stops real servers (tests/processes.py;
    # ``python -m pytest`` from the repository puts it on the path).
    from tests.processes import free_port, serve

    with contextlib.ExitStack() as stack:
        stack.callback(_drop_database, params, name)
        _run(["migrate", "-v", "0"], env)
        tokens = [
            make_token(env, label, "*=*,admin,reveal,erase")
            for label in ("client-tests", "client-tests-other")
        ]
        port = free_port()
        argv = [str(gunicorn), "--bind", f"127.0.0.1:{port}", "--workers", "2"]
        argv += ["--worker-class", "gthread", "--threads", "4", "flashq_project.wsgi"]
        log = root / "gunicorn.log"
        stack.enter_context(serve(argv, env=env, port=port, log=log))
        yield Server(f"http://127.0.0.1:{port}", tokens[0], tokens[1], env, log)


def _drop_database(params: dict[str, Any], name: str) -> None:
    with _admin(params) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        )
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture
def client(server: Server) -> Iterator[Client]:
    with server.client() as flashq:
        yield flashq


@pytest.fixture
def queue() -> str:
    """A queue name no other test uses."""
    return f"t-{uuid.uuid4().hex[:12]}"


def wait_for(check: Callable[[], bool], timeout: float = 15.0, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {check}")
        time.sleep(step)


def make_token(env: dict[str, str], label: str, allow: str) -> str:
    """A new token with the rights ``allow`` (``create_token --allow``) on the server of
    ``env`` (``Server.env``): one without ``reveal``, say, reads jobs as a reader does."""
    output = _run(["create_token", label, "--allow", allow], env)
    return output.strip().splitlines()[-1]


@contextlib.contextmanager
def running(worker: Worker) -> Iterator[threading.Thread]:
    """The worker runs in a thread; stopped (and joined) at the end of the block."""
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        worker.stop()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the worker did not stop"
