"""deploy/gunicorn.conf.py, as gunicorn loads it."""

from __future__ import annotations

import os
import runpy
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.conf import settings

CONF = Path(settings.BASE_DIR) / "deploy" / "gunicorn.conf.py"


def test_gunicorn_believes_no_forwarded_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    """gunicorn would set the scheme from X-Forwarded-Proto for its own list of peers,
    before the app's TRUSTED_PROXIES check: its list must be empty."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/nonexistent-for-this-test")
    conf = runpy.run_path(str(CONF))
    assert conf["forwarded_allow_ips"] == ""
    assert conf["worker_class"] == "gthread"
    assert conf["timeout"] > 30  # above the longest long poll


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


def test_workers_are_told_the_thread_pool_in_force(monkeypatch: pytest.MonkeyPatch) -> None:
    """The long-poll caps default to shares of the pool (settings: LONG_POLL_MAX_WAITERS),
    so a worker must see the value gunicorn runs with, --threads included."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/nonexistent-for-this-test")
    monkeypatch.setenv("GUNICORN_THREADS", "8")
    conf = runpy.run_path(str(CONF))
    server = SimpleNamespace(cfg=SimpleNamespace(threads=3))  # as if run with --threads 3
    conf["pre_fork"](server, None)
    assert os.environ["GUNICORN_THREADS"] == "3"
