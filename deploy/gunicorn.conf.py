"""gunicorn settings for production: ``gunicorn -c deploy/gunicorn.conf.py``.

Threaded workers, because a long-polling pull holds its thread while it waits (up to
30 s). Access logs carry no query strings: nothing secret goes in a URL, and we keep it
that way in the logs too. TLS terminates at the proxy in front (nginx or similar)."""

from __future__ import annotations

import multiprocessing
import os
import tempfile
from pathlib import Path
from typing import Any

wsgi_app = "flashq_project.wsgi:application"
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", multiprocessing.cpu_count() * 2))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
keepalive = 30
timeout = 60  # above the 30 s long-poll ceiling
graceful_timeout = 35
max_requests = 10_000
max_requests_jitter = 1_000
accesslog = "-"
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms "%({x-request-id}o)s"'
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")

# Prometheus counters (flashq_project.metrics) are summed over this server's workers
# through files in this directory: give it a writable one (an emptyDir under a read-only
# root filesystem), emptied when the server starts.
metrics_dir = os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="flashq-metrics-")
)


def on_starting(server: Any) -> None:
    Path(metrics_dir).mkdir(parents=True, exist_ok=True)
    for stale in Path(metrics_dir).glob("*.db"):
        stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
