"""Blocking work (the ORM, a service) called from an async view, off the event loop:
``await blocking(func, *args)``.

Under the ASGI server the call runs in the loop's shared pool of threads (not the
request's own thread, which Django would keep until the request ends) and gives back
the database connections it opened (to the pool) before it returns, so a request that
awaits something between calls holds neither a thread nor a connection meanwhile.

Under the test client (and any WSGI caller), an async view runs inside
``async_to_sync`` and its calling thread waits for it: the call runs in that thread, as
a sync view would, so it sees the test's transaction; a connection found open there is
left open."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from asgiref.sync import AsyncToSync, sync_to_async
from django.db import connections

P = ParamSpec("P")
R = TypeVar("R")


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
    work = sync_to_async(
        _leaving_connections_as_found(func), thread_sensitive=_inside_async_to_sync()
    )
    return await work(*args, **kwargs)
