"""The admin under the production server as deployed: gunicorn, production settings,
DEBUG off, static files collected and served by whitenoise (hashed names, compressed,
cached for a year), not by Django's development helpers."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from security.encryption import generate_key


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import secrets

    root = tmp_path_factory.mktemp("prod")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "flashq_project.settings.production",
        "DATABASE_URL": f"sqlite:///{root / 'db.sqlite3'}",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "TOKEN_PEPPER": secrets.token_urlsafe(32),
        "ENCRYPTION_KEYS": f"k1:{generate_key()}",
        "AUDIT_CHAIN_KEY": f"a1:{generate_key()}",
        "STATIC_ROOT": str(root / "static"),
        "SECURE_SSL_REDIRECT": "false",
        "ALLOWED_HOSTS": "127.0.0.1",
    }
    manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]
    for command in (["migrate", "-v", "0"], ["collectstatic", "--noinput", "-v", "0"]):
        subprocess.run([*manage, *command], env=env, check=True, cwd=settings.BASE_DIR)
    port = _free_port()
    gunicorn = Path(sys.executable).parent / "gunicorn"
    process = subprocess.Popen(
        [str(gunicorn), "-b", f"127.0.0.1:{port}", "-w", "1", "flashq_project.wsgi"],
        env=env,
        cwd=settings.BASE_DIR,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=1)  # noqa: S310
                break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
        return response.status, dict(response.headers), response.read()


def test_the_admin_login_page_is_styled_by_collected_static_files(server: str) -> None:
    status, _, body = _get(f"{server}/admin/login/")
    assert status == 200
    match = re.search(rb'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', body)
    assert match, "the admin links its stylesheet by a hashed (collected) name"
    status, headers, css = _get(server + match.group(1).decode())
    assert status == 200 and headers["Content-Type"].startswith("text/css")
    assert "max-age=315360000" in headers["Cache-Control"] and b"body" in css


def test_debug_is_off(server: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        _get(f"{server}/no-such-page/")
    assert caught.value.code == 404
    assert b"Django" not in caught.value.read()  # no debug page
