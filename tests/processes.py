"""Starting and stopping the real servers some tests run (gunicorn, nginx, qcluster):
``serve`` does it for every one of them (``running`` for a process with no port, such as
the scheduler); and the production environment they run in."""

from __future__ import annotations

import http.client
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from security.encryption import generate_key

BOOT_SECONDS = 30
BASE_DIR = Path(settings.BASE_DIR)
#: gunicorn as deployed: its settings come from deploy/gunicorn.conf.py (GUNICORN_*).
GUNICORN = [
    str(Path(sys.executable).parent / "gunicorn"),
    "-c",
    str(BASE_DIR / "deploy" / "gunicorn.conf.py"),
]


def production_secrets() -> dict[str, str]:
    """Fresh values for every secret production settings refuse to start without
    (flashq_project/settings/production.py). Listed here once: a secret that becomes
    required is added here, not in each test that starts a server."""
    return {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "TOKEN_PEPPER": secrets.token_urlsafe(32),
        "ENCRYPTION_KEYS": f"k1:{generate_key()}",
        "AUDIT_CHAIN_KEY": f"a1:{generate_key()}",
    }


def production_env(
    *,
    database_url: str,
    static_root: Path,
    without: tuple[str, ...] = (),
    **overrides: str,
) -> dict[str, str]:
    """This process's environment, less the variables whose names start with one of
    ``without``, with production settings, fresh secrets and ``database_url``; plain
    http on 127.0.0.1 (no proxy in front to redirect to https); ``overrides`` last.
    ``static_root`` is made if missing: whitenoise warns about a missing one."""
    static_root.mkdir(parents=True, exist_ok=True)
    kept = {key: value for key, value in os.environ.items() if not key.startswith(without)}
    return {
        **kept,
        "DJANGO_SETTINGS_MODULE": "flashq_project.settings.production",
        "DATABASE_URL": database_url,
        **production_secrets(),
        "SECURE_SSL_REDIRECT": "false",
        "ALLOWED_HOSTS": "127.0.0.1",
        "STATIC_ROOT": str(static_root),
        **overrides,
    }


def database_url(name: str | None = None) -> str:
    """The tests' PostgreSQL database (pytest-django's), or the database ``name`` on the
    same server, as a server process started by a test reaches it."""
    db = connection.settings_dict
    quote = urllib.parse.quote
    user = quote(str(db.get("USER") or ""), safe="")
    password = db.get("PASSWORD")
    credentials = f"{user}:{quote(str(password), safe='')}" if password else user
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{credentials}@{db.get('HOST') or ''}{port}/{name or db['NAME']}"


def manage(env: Mapping[str, str], *args: str, timeout: float = 120) -> str:
    """``manage.py args`` run in a server's environment (its secrets, its database):
    its output, or the test fails with the end of its errors."""
    done = subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), *args],
        env=dict(env),
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"manage.py {args[0]} failed: {done.stderr[-2000:]}"
    return done.stdout


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def tail(path: Path) -> str:
    """The end of a server's log, for a failure message."""
    return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"


def _answers(host: str, port: int, health: str | None) -> bool:
    """Whether ``health`` answers 200 on ``host:port``; with no ``health``, whether the
    port takes a connection."""
    if health is None:
        try:
            socket.create_connection((host, port), timeout=1).close()
        except OSError:
            return False
        return True
    connection = http.client.HTTPConnection(host, port, timeout=2)
    try:
        connection.request("GET", health)
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def wait_until_ready(
    process: subprocess.Popen[bytes],
    port: int,
    log: Path,
    *,
    host: str = "127.0.0.1",
    health: str | None = "/healthz",
) -> None:
    """Until the server answers ``health`` itself (or, with no ``health``, takes a
    connection on ``port``); a server that exits or is not ready in BOOT_SECONDS fails
    the test with the end of ``log``."""
    deadline = time.monotonic() + BOOT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server on {port} exited ({process.returncode}): {tail(log)}")
        if _answers(host, port, health):
            return
        time.sleep(0.1)
    wanted = f"answer {health}" if health else "listen"
    pytest.fail(f"the server on {port} did not {wanted}: {tail(log)}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate, then kill if it does not go within 10 s."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@dataclass(frozen=True)
class Served:
    """A server started by ``serve``: its process, where it listens and its log."""

    process: subprocess.Popen[bytes]
    host: str
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@contextmanager
def serve(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    port: int,
    log: Path,
    host: str = "127.0.0.1",
    health: str | None = "/healthz",
    shown_log: Path | None = None,
) -> Iterator[Served]:
    """Start ``argv`` (from the project's folder, its output into ``log``), wait until
    it answers ``health`` on ``host:port`` (``None``: until it takes a connection), and
    stop it on the way out. ``port`` is chosen by the caller with ``free_port`` since
    the command or its environment names it. A server that exits or is not ready fails
    the test with the end of ``shown_log`` (default: ``log``)."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            list(argv), env=dict(env), cwd=BASE_DIR, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_until_ready(process, port, shown_log or log, host=host, health=health)
        yield Served(process, host, port, log)
    finally:
        stop(process)


@contextmanager
def running(argv: Sequence[str], *, env: Mapping[str, str], log: Path) -> Iterator[Served]:
    """Start ``argv`` (a process that serves nothing, e.g. ``manage.py run_scheduler``)
    from the project's folder, its output appended to ``log``; stop it on the way out.
    The Served it yields has no port (0)."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            list(argv), env=dict(env), cwd=BASE_DIR, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield Served(process, "", 0, log)
    finally:
        stop(process)
