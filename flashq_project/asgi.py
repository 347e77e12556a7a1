"""ASGI entry point (gunicorn with flashq_project.asgiserver.Worker, or uvicorn).
Defaults to production settings.

Under ASGI Django runs a request's sync code (sync views, sync signal receivers) in a
thread of the request's own, kept until the request ends. Django's two receivers of
``request_started`` are sync: run at the start of every request, they would start that
thread for a waiting pull too and keep it through the wait. Both are no-ops in a fresh
thread (they tidy the connections and query log of the thread they run in, and a
request's thread has none yet), so they are disconnected here; ``request_finished``
still closes (gives back to the pool) what a sync view's thread opened."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application
from django.core.signals import request_started
from django.db import close_old_connections, reset_queries

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashq_project.settings.production")

from flashq_project.asgiserver import AccessLog

application = AccessLog(get_asgi_application())
request_started.disconnect(reset_queries)
request_started.disconnect(close_old_connections)
