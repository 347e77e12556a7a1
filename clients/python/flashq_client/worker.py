"""A worker: pulls jobs of one queue and runs a handler on each, in a pool of threads.

::

    python -m flashq_client.worker myapp.tasks:send_email --queue email --concurrency 4

How it works:

- It pulls as many jobs as it has free slots (at most ``batch``), long-polling up to
  ``wait`` seconds, and sends the acks of the jobs finished since the last pull in the
  same call (``ack``). Acks that wait longer than a second (the pull is long-polling) go
  in an ``ack_batch`` of their own, before their leases can run out.
- A pull answered 409 for its acks drops the acks it names (they were applied already,
  by a pull whose answer was lost, or their leases are gone) and logs a WARNING naming
  the jobs, never their data or results.
- The handler's return value is the result. An exception fails the job with the
  exception's class name as its ``code`` (shown to every reader of the job) and its text
  (its first 1000 characters; never a traceback or its locals; shown only to tokens
  with ``reveal``), to be retried after the job's backoff while it has attempts left.
- Every ``heartbeat`` seconds (default ``lease / 3``) each running job reports its
  progress, which extends its lease, so a long job keeps it. A heartbeat answered 409
  (the job was cancelled, or its lease was lost) means its result will be dropped.
- SIGTERM or SIGINT (handled when ``run()`` is called in the main thread) stops the
  pulling; running handlers get ``grace`` seconds from the signal to finish, finished
  jobs are acked, and every job not finished is released: waiting again at once, the
  attempt not counted (so a job on its last attempt is not failed by a shutdown),
  instead of after its lease. A server without ``release`` gets the old goodbye, a failed
  attempt ``"worker shutting down"`` (code ``worker_shutdown``) with no delay. A second
  signal ends the grace at once. A pull
  already long-polling when the signal comes is let finish (at most ``wait`` seconds);
  jobs it brings are given back the same way. Handler threads are daemons: one still
  running after the grace does not keep the process alive, and whatever it returns is
  dropped.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import queue as queues
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any, Literal

from .client import AckItem, Client, Job, LeasedJob, backoff_delay
from .errors import (
    Conflict,
    FieldDecryptionError,
    FlashqError,
    Forbidden,
    InvalidInput,
    NotFound,
    Unauthorized,
)
from .fields import open_job

logger = logging.getLogger("flashq_client.worker")

#: Receives the leased job (a ``WorkerJob``: ``id``, ``data``, ``attempts``,
#: ``lease_id``..., and ``children()``); what it returns (JSON-serialisable) is the job's
#: result.
Handler = Callable[[Any], Any]

SHUTDOWN_ERROR = "worker shutting down"
SHUTDOWN_CODE = "worker_shutdown"
RESULT_REFUSED_CODE = "result_refused"
MAX_CODE_CHARS = 64
# What a failure code may not hold (the server takes 1 to 64 of [A-Za-z0-9._-]).
_NOT_IN_CODE = re.compile(r"[^A-Za-z0-9._-]")
MAX_ERROR_CHARS = 1000
MAX_BATCH = 1000
# Acks sent in one request carry at most this many bytes of results (one bigger result
# goes alone): a pull body must stay under the server's MAX_REQUEST_BYTES (10 MiB) and a
# batch ack's under MAX_ACK_BATCH_BYTES (2 MiB), whatever the handlers return.
MAX_ACK_RESULT_BYTES = 1024 * 1024
#: Seconds a finished job's ack may wait for the next pull before it is sent alone.
ACK_FLUSH_SECONDS = 1.0
#: Errors after which pulling cannot succeed by waiting.
FATAL = (Unauthorized, Forbidden, NotFound)


class WorkerJob(dict[str, Any]):
    """What a handler receives: the leased job as ``pull`` returns it (``job["data"]``,
    ``job["attempts"]``...), and ``children()``."""

    def __init__(self, job: LeasedJob, client: Client) -> None:
        super().__init__(job)
        self._client = client

    def children(self) -> list[Job]:
        """This job's children in its flow, each as ``get_job`` shows it (state,
        ``result``, ``error_code``), asked with the worker's token: it needs ``getJob``
        on this job's queue (else ``Forbidden``) and on the children's queues (children
        elsewhere are left out). A parent under ``on_child_failure="continue"`` finds
        its failed children here."""
        return self._client.children(self["id"])


@dataclass(eq=False)
class _Running:
    job: LeasedJob
    last_beat: float
    #: running: in the handler; reporting: failing it (the handler's thread owns it now)
    state: Literal["running", "reporting"] = "running"
    #: the lease is gone (a heartbeat got 409): the result will be dropped
    lost: bool = False
    #: given back at shutdown: the result will be dropped
    abandoned: bool = False


@dataclass(eq=False)
class _Pending:
    """A finished job waiting for its ack."""

    item: AckItem
    since: float
    size: int = 0  # its result's encoded bytes


def _indices(error: FlashqError, root: str, size: int) -> set[int]:
    """Which items of a list sent as ``root`` (``/ack``, ``/jobs``) the error names."""
    pattern = re.compile(re.escape(root) + r"/(\d+)(?:/|$)")
    found = set()
    for problem in error.errors:
        match = pattern.match(problem["path"])
        if match and int(match.group(1)) < size:
            found.add(int(match.group(1)))
    return found


def _error_text(exc: BaseException) -> str:
    return str(exc)[:MAX_ERROR_CHARS]  # the class name goes in the code


def error_code(exc: BaseException) -> str:
    """The exception's class name as a failure code: characters the server does not
    take in a code (a non-ASCII letter of an identifier) become ``_``. A sealed field
    that does not open gives its own code (``field_open_failed``...)."""
    if isinstance(exc, FieldDecryptionError):
        return exc.code
    return _NOT_IN_CODE.sub("_", type(exc).__name__)[:MAX_CODE_CHARS]


class Worker:
    """Runs ``handler`` on the jobs of ``queue``, ``concurrency`` at a time."""

    def __init__(
        self,
        client: Client,
        queue: str,
        handler: Handler,
        *,
        concurrency: int = 1,
        lease: int = 30,
        batch: int | None = None,
        wait: float = 20.0,
        heartbeat: float | None = None,
        grace: float = 20.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if lease < 1:
            raise ValueError("lease must be at least 1 second")
        if batch is not None and not 1 <= batch <= MAX_BATCH:
            raise ValueError(f"batch must be 1 to {MAX_BATCH}")
        if wait < 0 or grace < 0:
            raise ValueError("wait and grace cannot be negative")
        if heartbeat is not None and heartbeat <= 0:
            raise ValueError("heartbeat must be positive")
        self.client = client
        self.queue = queue
        self.handler = handler
        self.concurrency = concurrency
        self.lease = lease
        self.batch = batch
        self.wait = wait
        self.heartbeat = heartbeat if heartbeat is not None else lease / 3
        self.grace = grace
        #: Jobs completed (acked) and failed by this worker so far.
        self.completed = 0
        self.failed = 0
        self._flush_after = min(ACK_FLUSH_SECONDS, lease / 4)
        self._lock = threading.Lock()
        self._running: dict[str, _Running] = {}
        self._acks: list[_Pending] = []
        self._tasks: queues.SimpleQueue[LeasedJob | None] = queues.SimpleQueue()
        # Set by handler threads when a slot frees; waited on by run() with a timeout.
        self._wake = threading.Event()
        self._keeper_stop = threading.Event()
        # Plain attributes, not Events: a signal handler may set them without a lock.
        self._stopping = False
        self._force = False
        self._stop_time: float | None = None
        self._started = False

    def __repr__(self) -> str:
        return f"Worker(queue={self.queue!r}, concurrency={self.concurrency})"

    # -- control

    def stop(self) -> None:
        """Stop pulling and shut down as on SIGTERM; run() returns when it is done. May
        be called from any thread."""
        self._request_stop()
        self._wake.set()

    def _request_stop(self) -> None:
        if not self._stopping:
            self._stop_time = time.monotonic()
            self._stopping = True

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only plain assignments here: the main thread may hold any lock right now.
        if self._stopping:
            self._force = True
        self._request_stop()

    def run(self) -> None:
        """Work until stop(), SIGTERM or SIGINT; then shut down gracefully. Raises the
        error that made pulling impossible (401, 403), after the same shutdown."""
        if self._started:
            raise RuntimeError("a Worker runs once; make a new one")
        self._started = True
        previous: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, self._on_signal)
        slots = [
            threading.Thread(target=self._slot, name=f"flashq-slot-{n}", daemon=True)
            for n in range(self.concurrency)
        ]
        keeper = threading.Thread(target=self._keep, name="flashq-keeper", daemon=True)
        for thread in [*slots, keeper]:
            thread.start()
        logger.info(
            "worker started: queue %s, concurrency %d, lease %d s",
            self.queue,
            self.concurrency,
            self.lease,
        )
        fatal: FlashqError | None = None
        try:
            fatal = self._loop()
        finally:
            self._request_stop()
            self._shutdown(keeper, len(slots))
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        logger.info("worker stopped: %d completed, %d failed", self.completed, self.failed)
        if fatal is not None:
            raise fatal

    # -- the pulling loop (the thread that called run())

    def _loop(self) -> FlashqError | None:
        failures = 0
        while not self._stopping:
            self._wake.clear()
            with self._lock:
                free = self.concurrency - len(self._running)
            if free <= 0:
                self._wake.wait(0.2)
                continue
            count = min(free, self.batch or free, MAX_BATCH)
            taken = self._take_acks()
            try:
                jobs = self.client.pull(
                    self.queue,
                    count=count,
                    lease=self.lease,
                    wait=self.wait,
                    ack=[pending.item for pending in taken],
                )
            except Conflict as exc:
                self._refused(taken, exc, "/ack")
                continue
            except InvalidInput as exc:
                if not _indices(exc, "/ack", len(taken)):
                    self._put_back(taken)
                    logger.error("pull refused: %s", exc)
                    return exc
                self._refused(taken, exc, "/ack")
                continue
            except FATAL as exc:
                self._put_back(taken)
                logger.error("pull refused: %s", exc)
                return exc
            except FlashqError as exc:
                # No answer, 429, 5xx: the acks may or may not have been applied; a
                # later pull or ack_batch that carries them again learns which.
                self._put_back(taken)
                delay = backoff_delay(failures)
                failures += 1
                logger.warning("pull failed (%s); trying again in %.1f s", exc, delay)
                self._pause(delay)
                continue
            failures = 0
            with self._lock:
                self.completed += len(taken)
            self._start(jobs)
            if not jobs and jobs.retry_after:
                # The server's waiting pulls are all taken: it answered at once instead
                # of long-polling, and asks for a pause rather than a busy loop.
                self._pause(jobs.retry_after)
        return None

    def _start(self, jobs: Sequence[LeasedJob]) -> None:
        now = time.monotonic()
        for job in jobs:
            if self._stopping:
                self._give_back(job)
                continue
            with self._lock:
                self._running[job["id"]] = _Running(job=job, last_beat=now)
            self._tasks.put(job)

    def _pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < deadline:
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    # -- handler threads

    def _slot(self) -> None:
        while True:
            job = self._tasks.get()
            if job is None:
                return
            try:
                self._execute(job)
            except Exception:  # the client's own failure: the job's lease runs out
                logger.exception("job %s: could not be reported", job["id"])
                with self._lock:  # no more heartbeats for it
                    self._running.pop(job["id"], None)

    def _execute(self, job: LeasedJob) -> None:
        job_id, lease_id = job["id"], job["lease_id"]
        try:
            result = self.handler(WorkerJob(open_job(job, self.client.field_keys), self.client))
            size = len(json.dumps(result, allow_nan=False).encode())  # as the server will
        except BaseException as exc:  # a handler's SystemExit fails its job too
            logger.warning("job %s failed: %s", job_id, type(exc).__name__)
            self._report_failure(job_id, lease_id, _error_text(exc), error_code(exc))
            return
        with self._lock:
            record = self._running.pop(job_id, None)
            if record is not None and not (record.lost or record.abandoned):
                item: AckItem = {"id": job_id, "lease_id": lease_id, "result": result}
                self._acks.append(_Pending(item, time.monotonic(), size))
        if record is not None and (record.lost or record.abandoned):
            why = "given back at shutdown" if record.abandoned else "its lease was lost"
            logger.warning("job %s finished after %s; its result is dropped", job_id, why)
        self._wake.set()

    def _report_failure(self, job_id: str, lease_id: str, error: str, code: str) -> None:
        with self._lock:
            record = self._running.get(job_id)
            if record is None or record.lost or record.abandoned:
                self._running.pop(job_id, None)
                record = None
            else:
                record.state = "reporting"
        if record is not None:
            try:
                self._fail(job_id, lease_id, error, code=code)
            finally:
                with self._lock:
                    self._running.pop(job_id, None)
                    self.failed += 1
        self._wake.set()

    def _fail(
        self,
        job_id: str,
        lease_id: str,
        error: str,
        *,
        code: str | None = None,
        plain: bool = False,
        retry: bool = True,
        delay_ms: int | None = None,
    ) -> None:
        """Fail a leased job; never raises."""
        try:
            self.client.fail(job_id, lease_id, error, code=code, retry=retry, delay_ms=delay_ms)
        except InvalidInput as exc:
            logger.warning("job %s: the error text was refused (%s)", job_id, exc.code)
            if not plain:  # the text itself (a card number in it, say): say less
                code_refused = any(problem["path"] == "/code" for problem in exc.errors)
                self._fail(
                    job_id,
                    lease_id,
                    f"error text refused: {exc.code}",
                    code=None if code_refused else code,
                    plain=True,
                    retry=retry,
                    delay_ms=delay_ms,
                )
        except Conflict:
            logger.warning("job %s: its lease is gone; not failed", job_id)
        except FlashqError as exc:
            logger.warning(
                "job %s: could not be failed (%s); it returns after its lease", job_id, exc
            )

    def _give_back(self, job: LeasedJob) -> None:
        """Back at once, the attempt not counted (release), so a shutdown never fails a
        job on its last attempt. A server without release (404 or 405 on the route) gets
        the old goodbye: a failed attempt with delay 0."""
        try:
            self.client.release(job["id"], job["lease_id"])
            return
        except Conflict:
            logger.warning("job %s: its lease is gone; not given back", job["id"])
            return
        except FlashqError as exc:
            if exc.status not in (404, 405):
                logger.warning(
                    "job %s: could not be given back (%s); it returns after its lease",
                    job["id"],
                    exc,
                )
                return
        self._fail(job["id"], job["lease_id"], SHUTDOWN_ERROR, code=SHUTDOWN_CODE, delay_ms=0)

    # -- acks

    def _take_acks(self) -> list[_Pending]:
        """The next acks to send: at most MAX_BATCH, and MAX_ACK_RESULT_BYTES of results
        (but always the first, whatever its size: alone it fits)."""
        with self._lock:
            count, total = 0, 0
            for pending in self._acks[:MAX_BATCH]:
                if count and total + pending.size > MAX_ACK_RESULT_BYTES:
                    break
                count, total = count + 1, total + pending.size
            taken, self._acks = self._acks[:count], self._acks[count:]
        return taken

    def _put_back(self, items: list[_Pending]) -> None:
        if items:
            with self._lock:
                self._acks[:0] = items

    def _refused(self, items: list[_Pending], error: FlashqError, root: str) -> None:
        """Settle acks the server refused (all of them: acks are all or nothing)."""
        named = _indices(error, root, len(items))
        if isinstance(error, Conflict):
            dropped = [items[i] for i in sorted(named)] if named else items
            logger.warning(
                "dropped %d ack(s) refused as stale (already applied, lease expired or job "
                "cancelled): %s (request %s)",
                len(dropped),
                ", ".join(pending.item["id"] for pending in dropped),
                error.request_id,
            )
            self._put_back([items[i] for i in range(len(items)) if named and i not in named])
            return
        # A result refused (too large, a card number in it): the job fails instead.
        self._put_back([items[i] for i in range(len(items)) if i not in named])
        for i in sorted(named):
            job_id = items[i].item["id"]
            logger.warning("job %s: its result was refused (%s); failing it", job_id, error.code)
            # Not retried: running it again would only have its result refused again.
            self._fail(
                job_id,
                items[i].item["lease_id"],
                f"result refused: {error.detail}",
                code=RESULT_REFUSED_CODE,
                retry=False,
            )
            with self._lock:
                self.failed += 1

    def _send_acks(self, items: list[_Pending], *, final: bool = False) -> None:
        """Ack ``items`` with ack_batch; on an error naming no item, one by one."""
        if not items:
            return
        try:
            acked = self.client.ack_batch([pending.item for pending in items])
        except (Conflict, InvalidInput) as exc:
            if _indices(exc, "/jobs", len(items)):
                self._refused(items, exc, "/jobs")
            else:
                self._ack_each(items, final=final)
            return
        except FlashqError as exc:
            if isinstance(exc, NotFound):  # a job deleted meanwhile
                self._ack_each(items, final=final)
                return
            logger.warning("ack_batch failed (%s)", exc)
            if not final:
                self._put_back(items)
            return
        with self._lock:
            self.completed += acked

    def _ack_each(self, items: list[_Pending], *, final: bool) -> None:
        for pending in items:
            item = pending.item
            try:
                self.client.ack(item["id"], item["lease_id"], item.get("result"))
            except (Conflict, NotFound) as exc:
                logger.warning("dropped the ack of job %s (%s)", item["id"], exc.code)
                continue
            except InvalidInput as exc:
                logger.warning("job %s: its result was refused (%s)", item["id"], exc.code)
                self._fail(
                    item["id"],
                    item["lease_id"],
                    f"result refused: {exc.detail}",
                    code=RESULT_REFUSED_CODE,
                )
                with self._lock:
                    self.failed += 1
                continue
            except FlashqError as exc:
                logger.warning("ack of job %s failed (%s)", item["id"], exc)
                if not final:
                    self._put_back([pending])
                continue
            with self._lock:
                self.completed += 1

    # -- heartbeats and late acks (the keeper thread)

    def _keep(self) -> None:
        tick = max(0.05, min(0.25, self.heartbeat / 4, self._flush_after / 2))
        while not self._keeper_stop.wait(tick):
            self._beat()
            now = time.monotonic()
            with self._lock:
                due = any(now - pending.since >= self._flush_after for pending in self._acks)
            if due:
                self._send_acks(self._take_acks())

    def _beat(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = [
                record
                for record in self._running.values()
                if record.state == "running"
                and not (record.lost or record.abandoned)
                and now - record.last_beat >= self.heartbeat
            ]
            for record in due:
                record.last_beat = now
        for record in due:
            job = record.job
            try:
                self.client.progress(job["id"], job["lease_id"], job["progress"])
            except (Conflict, NotFound) as exc:
                with self._lock:
                    record.lost = True
                logger.warning(
                    "job %s: heartbeat refused (%s): cancelled or lease lost; its result "
                    "will be dropped",
                    job["id"],
                    exc.code,
                )
            except FlashqError as exc:
                logger.warning("job %s: heartbeat failed (%s)", job["id"], exc)

    # -- shutdown

    def _shutdown(self, keeper: threading.Thread, slots: int) -> None:
        deadline = (self._stop_time or time.monotonic()) + self.grace
        with self._lock:
            busy = len(self._running)
        if busy:
            logger.info("stopping: waiting up to %.1f s for %d running job(s)", self.grace, busy)
        while not self._force and time.monotonic() < deadline:
            self._wake.clear()
            with self._lock:
                if not self._running:
                    break
            self._wake.wait(0.1)
        with self._lock:
            left = [record for record in self._running.values() if record.state == "running"]
            for record in left:
                record.abandoned = True
        self._keeper_stop.set()
        keeper.join(timeout=30)
        while True:
            taken = self._take_acks()
            if not taken:
                break
            self._send_acks(taken, final=True)
        for record in left:
            logger.warning("job %s not finished in time; giving it back", record.job["id"])
            self._give_back(record.job)
        for _ in range(slots):
            self._tasks.put(None)


# -- the command line -----------------------------------------------------------------------


def load_handler(spec: str) -> Handler:
    """``package.module:function`` (or ``module:object.method``) to the callable."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"handler must be module:function, not {spec!r}")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"{spec} is not callable")
    return target  # type: ignore[no-any-return]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flashq_client.worker",
        description="Run a flashQ worker. The token comes from FLASHQ_TOKEN or the file "
        "FLASHQ_TOKEN_FILE names (never from the command line, where ps would show it).",
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
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        handler = load_handler(args.handler)
        client = Client(args.url, allow_insecure_http=args.allow_insecure_http)
        worker = Worker(
            client,
            args.queue,
            handler,
            concurrency=args.concurrency,
            lease=args.lease,
            batch=args.batch,
            wait=args.wait,
            heartbeat=args.heartbeat,
            grace=args.grace,
        )
    except (ValueError, ImportError, AttributeError) as exc:
        parser.error(str(exc))
    with client:
        try:
            worker.run()
        except FlashqError as exc:
            logger.error("worker stopped: %s", exc)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
