"""gunicorn settings for production: ``gunicorn -c deploy/gunicorn.conf.py``.

ASGI workers (uvicorn's, flashq_project.asgiserver.Worker): a long-polling pull or a
job wait (up to 30 s) awaits its wake-up on the worker's event loop and holds no thread
(queues.waiting), so a worker serves any number of them beside pushes, acks and probes;
LONG_POLL_MAX_WAITERS (1,000 per worker, a quarter per token family) only bounds them.
The rest of the app runs its sync part (views, the ORM) in the worker's SYNC_THREADS (8)
shared threads, each keeping its connection, as gthread's 8 threads per worker did
(flashq_project/asgi.py, kernel.blocking). Access logs carry no
query strings: nothing secret goes in a URL, and we keep it that way in the logs too; a
card number a careless client put in the path anyway is written as its first 6 and last
4 digits, here and in the error log (flashq_project.asgiserver, gunicornlog). TLS
terminates at the proxy in front (nginx or similar)."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

wsgi_app = "flashq_project.asgi:application"
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", multiprocessing.cpu_count() * 2))
worker_class = "flashq_project.asgiserver.Worker"
keepalive = 30
timeout = 60  # above the 30 s long-poll ceiling
graceful_timeout = 35
# A worker is replaced after this many requests, a guard against slow leaks (the soaks
# saw none: worker RSS +2 MB over a run). 10,000 replaced a worker every ~3 s under
# wrk's /healthz load and every ~15 s under single pushes: each replacement cost ~0.5 s
# of CPU to import the app, cold caches and prepared statements, and reset any
# keep-alive connection the old worker held (wrk counted socket errors).
max_requests = 100_000
max_requests_jitter = 10_000
accesslog = "-"
# The ASGI worker's lines are written by flashq_project.asgiserver.AccessLog in this
# format; gunicorn's own logger (a sync or gthread worker) would use it as it is.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms "%({x-request-id}o)s"'
logger_class = "flashq_project.gunicornlog.CardMaskingLogger"
# No peer's forwarded headers are believed by gunicorn itself (it would set the request's
# scheme from X-Forwarded-Proto before the app looks): the app decides, trusting only
# TRUSTED_PROXIES (flashq_project.proxyheaders).
forwarded_allow_ips = ""

# Prometheus counters (flashq_project.metrics) are summed over this server's workers
# through files in this directory: give it a writable one (an emptyDir under a read-only
# root filesystem), emptied when the server starts.
_own_metrics_dir = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
if _own_metrics_dir:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="flashq-metrics-")
metrics_dir = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])


def on_starting(server: Any) -> None:
    metrics_dir.mkdir(parents=True, exist_ok=True)
    for stale in metrics_dir.glob("*.db"):
        stale.unlink()


def on_exit(server: Any) -> None:
    if _own_metrics_dir:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
