"""deploy/gunicorn.conf.py, as gunicorn loads it."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.utils.module_loading import import_string

CONF = Path(settings.BASE_DIR) / "deploy" / "gunicorn.conf.py"


def test_gunicorn_believes_no_forwarded_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    """gunicorn would set the scheme from X-Forwarded-Proto for its own list of peers,
    before the app's TRUSTED_PROXIES check: its list must be empty."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/nonexistent-for-this-test")
    conf = runpy.run_path(str(CONF))
    assert conf["forwarded_allow_ips"] == ""
    assert conf["timeout"] > 30  # above the longest long poll


def test_it_serves_the_asgi_app_with_the_worker_that_believes_no_forwarded_headers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """uvicorn would rewrite the client address from X-Forwarded-For for its own list of
    peers (127.0.0.1 by default) and log query strings: our worker does neither."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/nonexistent-for-this-test")
    conf = runpy.run_path(str(CONF))
    assert conf["wsgi_app"] == "flashq_project.asgi:application"
    assert conf["worker_class"] == "flashq_project.asgiserver.Worker"
    worker = import_string(conf["worker_class"])
    assert worker.CONFIG_KWARGS["proxy_headers"] is False
    assert worker.CONFIG_KWARGS["access_log"] is False


def test_a_given_metrics_directory_is_used_and_kept(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    conf = runpy.run_path(str(CONF))
    conf["on_starting"](None)
    (tmp_path / "metrics" / "counter_1.db").write_bytes(b"stale")
    conf["on_starting"](None)  # a restart empties it
    assert list((tmp_path / "metrics").iterdir()) == []
    conf["on_exit"](None)
    assert (tmp_path / "metrics").is_dir()  # the operator's directory stays


def test_its_own_metrics_directory_is_removed_on_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")  # so the teardown removes it again
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    conf = runpy.run_path(str(CONF))
    made = Path(conf["metrics_dir"])
    assert made.is_dir()
    conf["on_exit"](None)
    assert not made.exists()


def test_a_settled_heap_leaves_the_collector_only_what_came_later() -> None:
    """settle_heap, in a process of its own (freezing is for good): the URLconf and its
    views are loaded first, then everything alive is out of the collector's sight."""
    code = (
        "import gc, sys, django; django.setup()\n"
        "from flashq_project.asgiserver import settle_heap\n"
        "assert 'queues.api.pushview' not in sys.modules\n"
        "frozen = settle_heap()\n"
        "assert 'queues.api.pushview' in sys.modules\n"
        "print(frozen, len(gc.get_objects()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=settings.BASE_DIR,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "flashq_project.settings.test"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    frozen, tracked = map(int, done.stdout.split())
    assert frozen > 50_000 and tracked < 1_000
