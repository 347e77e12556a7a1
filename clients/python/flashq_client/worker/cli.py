"""``python -m flashq_client.worker`` (and the ``flashq-worker`` script): run a worker
from the command line. A handler that is a coroutine function (``async def``) runs on an
``AsyncWorker`` with an ``AsyncClient``; any other callable on a thread ``Worker``."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import logging
import os
from collections.abc import Sequence
from typing import Any

from ..aio import AsyncClient
from ..client import Client
from ..errors import FlashqError
from .aio import AsyncWorker
from .core import Settings
from .threads import Handler, Worker

logger = logging.getLogger("flashq_client.worker")


def load_handler(spec: str) -> Handler:
    """The callable a ``module:function`` spec names.

    Args:
        spec: ``package.module:function``, or ``module:object.method``.

    Returns:
        The callable, imported.

    Raises:
        ValueError: the spec is malformed or names something not callable.
        ImportError: the module cannot be imported.
        AttributeError: the module has no such attribute.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"handler must be module:function, not {spec!r}")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"{spec} is not callable")
    return target  # type: ignore[no-any-return]


def is_async(handler: Handler) -> bool:
    """Whether the handler is a coroutine function (or an object whose ``__call__`` is
    one): it then runs on an ``AsyncWorker``."""
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 - the method, not callable()
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m flashq_client.worker",
        description="Run a flashQ worker. The token comes from FLASHQ_TOKEN or the file "
        "FLASHQ_TOKEN_FILE names (never from the command line, where ps would show it). "
        "An async def handler runs on the asyncio worker.",
    )
    parser.add_argument("handler", help="module:function, called with each leased job")
    parser.add_argument("--queue", required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument(
        "--url",
        default=os.environ.get("FLASHQ_URL", "http://127.0.0.1:8000"),
        help="the server (default $FLASHQ_URL or http://127.0.0.1:8000)",
    )
    parser.add_argument("--lease", type=int, default=30, help="seconds (default 30)")
    parser.add_argument("--wait", type=float, default=20.0, help="long poll, seconds")
    parser.add_argument("--batch", type=int, default=None, help="most jobs per pull")
    parser.add_argument("--heartbeat", type=float, default=None, help="default lease/3")
    parser.add_argument("--grace", type=float, default=20.0, help="seconds, on SIGTERM")
    parser.add_argument("--allow-insecure-http", action="store_true")
    parser.add_argument("--log-level", default="INFO")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a worker as the command line asks; the exit status (1: pulling was refused).

    Args:
        argv: The arguments (default ``sys.argv[1:]``).

    Returns:
        0 after a shutdown on SIGTERM or SIGINT, 1 when the server refused the pulls.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = {
        "concurrency": args.concurrency,
        "lease": args.lease,
        "batch": args.batch,
        "wait": args.wait,
        "heartbeat": args.heartbeat,
        "grace": args.grace,
    }
    try:
        Settings(args.queue, **settings)  # refused here, with the usage
        handler = load_handler(args.handler)
        if is_async(handler):
            return _run_async(parser, args, handler, settings)
        client = Client(args.url, allow_insecure_http=args.allow_insecure_http)
        worker = Worker(client, args.queue, handler, **settings)
    except (ValueError, ImportError, AttributeError) as exc:
        parser.error(str(exc))
    with client:
        try:
            worker.run()
        except FlashqError as exc:
            logger.error("worker stopped: %s", exc)
            return 1
    return 0


def _run_async(
    parser: argparse.ArgumentParser, args: argparse.Namespace, handler: Any, settings: Any
) -> int:
    async def work() -> int:
        async with AsyncClient(args.url, allow_insecure_http=args.allow_insecure_http) as client:
            try:
                await AsyncWorker(client, args.queue, handler, **settings).run()
            except FlashqError as exc:
                logger.error("worker stopped: %s", exc)
                return 1
        return 0

    return asyncio.run(work())
