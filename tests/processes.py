"""Starting and stopping the real servers some tests run (gunicorn, nginx, qcluster),
and the production environment they run in."""

from __future__ import annotations

import http.client
import os
import secrets
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest
from django.db import connection

from security.encryption import generate_key

BOOT_SECONDS = 30


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


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def tail(path: Path) -> str:
    """The end of a server's log, for a failure message."""
    return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"


def wait_for_healthz(
    process: subprocess.Popen[bytes], port: int, log: Path, *, host: str = "127.0.0.1"
) -> None:
    """Until the app answers /healthz itself; a server that exits or never answers fails
    the test with its log."""
    deadline = time.monotonic() + BOOT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server on {port} exited ({process.returncode}): {tail(log)}")
        connection = http.client.HTTPConnection(host, port, timeout=2)
        try:
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.1)
    pytest.fail(f"the server on {port} did not answer /healthz: {tail(log)}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate, then kill if it does not go within 10 s."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
