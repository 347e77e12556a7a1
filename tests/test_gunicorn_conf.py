"""deploy/gunicorn.conf.py, as gunicorn loads it."""

from __future__ import annotations

import runpy
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
