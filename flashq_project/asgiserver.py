"""The ASGI server's pieces: the worker gunicorn runs (``worker_class`` in
deploy/gunicorn.conf.py) and the access log it writes.

The worker is uvicorn's, minus what the app decides itself: it believes no forwarded
headers (flashq_project.proxyheaders trusts only TRUSTED_PROXIES), writes no access
line of its own (uvicorn's would carry the query string and any card number in the
path), sends no ``Server`` header and skips the lifespan protocol (Django has none). Its
error log masks card numbers as gunicorn's does (flashq_project.gunicornlog).

Once the app is loaded, the worker settles its heap (``settle_heap``): every view
imported, then the ~120,000 objects of a loaded Django app moved out of the garbage
collector's sight (``gc.freeze``). Each full collection walked them all: 35-60 ms of
CPU, 100-250 ms of wall time on a busy 2-core machine, during which the worker's event
loop answers nobody. Under wrk at 16 connections that was the p99 (healthz 133-159 ms,
single push 111-126 ms); frozen, 13-19 ms and 79-83 ms, a full collection 2-17 ms.

``AccessLog`` wraps the app (flashq_project/asgi.py) and writes one line per request,
in the format gunicorn's threaded workers wrote (``%(h)s "%(m)s %(U)s" %(s)s %(b)s
%(M)sms "%({x-request-id}o)s"``): the path without its query string, card numbers
masked, to gunicorn's access log."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from django.urls import get_resolver
from uvicorn_worker import UvicornWorker  # type: ignore[import-untyped]

from .gunicornlog import ERROR_LOG_FILTER, redact

ACCESS_LOGGER = logging.getLogger("flashq.access")

Scope = dict[str, Any]
Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class Worker(UvicornWorker):  # type: ignore[misc]  # uvicorn-worker ships no type hints
    CONFIG_KWARGS = {
        "loop": "auto",
        "http": "auto",
        "proxy_headers": False,
        "access_log": False,
        "server_header": False,
        "lifespan": "off",
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        logging.getLogger("uvicorn.error").addFilter(ERROR_LOG_FILTER)
        ACCESS_LOGGER.handlers = self.log.access_log.handlers
        ACCESS_LOGGER.setLevel(self.log.access_log.level)
        ACCESS_LOGGER.propagate = False

    def load_wsgi(self) -> None:
        super().load_wsgi()
        frozen = settle_heap()
        self.log.info("Heap settled: %d objects out of the garbage collector's sight", frozen)


def settle_heap() -> int:
    """Import every view (the URLconf loads lazily, at the first request), collect, and
    freeze what is left: a loaded app's modules, classes and caches live as long as the
    process, so no collection needs to walk them again. Objects made later are
    collected as before. The number of objects frozen."""
    get_resolver().url_patterns  # noqa: B018  # imports the URLconf and every view
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class AccessLog:
    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not ACCESS_LOGGER.handlers:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        seen: dict[str, Any] = {"status": "-", "bytes": 0, "request_id": "-"}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                for name, value in message.get("headers", ()):
                    if name.lower() == b"x-request-id":
                        seen["request_id"] = value.decode("latin-1")
            elif message["type"] == "http.response.body":
                seen["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            client = scope.get("client") or ("-", 0)
            raw_path = scope.get("raw_path") or scope["path"].encode()
            ACCESS_LOGGER.info(
                '%s "%s %s" %s %s %dms "%s"',
                client[0],
                scope["method"],
                redact(raw_path.decode("latin-1").split("?", 1)[0]),
                seen["status"],
                seen["bytes"] or "-",
                (time.perf_counter() - started) * 1000,
                seen["request_id"],
            )
