"""The worker process's threads for sync code under the ASGI server, and blocking work
(the ORM, a service) called from an async view, off the event loop:
``await blocking(func, *args)``.

``shared_threads()`` is a bounded pool (SYNC_THREADS, 8 like the threaded WSGI server
had per worker): the ASGI handler (flashq_project.asgi) runs each request's sync views,
hooks and ``response.close`` there, and ``blocking`` runs there too. A thread keeps its
database connection from call to call (CONN_MAX_AGE, as under a threaded WSGI server;
with a psycopg pool, CONN_MAX_AGE is 0 and the connection goes back to the pool), and
after each call gives up one that is broken, past its age or left outside autocommit,
as Django does at the end of a request. A request that awaits something between calls
holds no thread meanwhile.

Under the test client (and any WSGI caller), an async view runs inside
``async_to_sync`` and its calling thread waits for it: the call runs in that thread, as
a sync view would, so it sees the test's transaction; a connection found open there is
left open."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import AsyncToSync, sync_to_async
from django.conf import settings
from django.db import connections

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_SYNC_THREADS = 8


class SharedThreads(ThreadPoolExecutor):
    """Each call is followed by the end-of-request tidy of its thread's connections."""

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> Future[R]:
        return super().submit(_tidied, fn, *args, **kwargs)


def _tidied(fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> R:
    try:
        return fn(*args, **kwargs)
    finally:
        for conn in connections.all(initialized_only=True):
            if not conn.in_atomic_block:
                conn.close_if_unusable_or_obsolete()


_threads: SharedThreads | None = None
_creating = threading.Lock()


def shared_threads() -> SharedThreads:
    global _threads
    with _creating:
        if _threads is None:
            size = getattr(settings, "SYNC_THREADS", DEFAULT_SYNC_THREADS)
            _threads = SharedThreads(max_workers=size, thread_name_prefix="flashq-sync")
        return _threads


def _leaving_connections_as_found(func: Callable[P, R]) -> Callable[P, R]:
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        open_before = {conn.alias for conn in connections.all() if conn.connection is not None}
        try:
            return func(*args, **kwargs)
        finally:
            for conn in connections.all(initialized_only=True):
                if conn.alias not in open_before and not conn.in_atomic_block:
                    conn.close()

    return run


def _inside_async_to_sync() -> bool:
    """Whether a sync thread waits for this event loop (asgiref's own test for where a
    thread-sensitive call goes)."""
    return (
        getattr(AsyncToSync.executors, "current", None) is not None
        or asyncio.get_running_loop() in AsyncToSync.loop_thread_executors
    )


async def blocking(func: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    if _inside_async_to_sync():
        work = sync_to_async(_leaving_connections_as_found(func), thread_sensitive=True)
        return await work(*args, **kwargs)
    # Straight to the pool with the caller's context, as asyncio.to_thread does: what
    # sync_to_async adds (thread-sensitive routing, copying the context back) is not
    # needed here and cost a tenth of a returning long poll's CPU.
    call = functools.partial(contextvars.copy_context().run, func, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(shared_threads(), call)
