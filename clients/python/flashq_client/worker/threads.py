"""The thread worker: handlers in a pool of threads, beside the pulling loop, a
heartbeat thread and an ack flusher, so none of them waits on another's I/O."""

from __future__ import annotations

import logging
import queue as queues
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from ..client import Client, LeasedJob
from ..errors import FlashqError
from . import flows
from .base import WorkerBase
from .core import Key, key_of
from .jobs import WorkerJob

logger = logging.getLogger("flashq_client.worker")

#: Receives the leased job (a ``WorkerJob``); what it returns (JSON-serialisable) is
#: the job's result.
Handler = Callable[[Any], Any]


class Worker(WorkerBase[Client, Handler, threading.Event]):
    """Runs ``handler`` on the jobs of ``queue``, ``concurrency`` at a time, each in a
    thread of its own; ``run()`` blocks until SIGTERM, SIGINT or ``stop()``.

    The handler receives a ``WorkerJob``. Handler threads are daemons: one still running
    after the grace does not keep the process alive, and what it returns is dropped.
    """

    _flag = threading.Event
    _tasks: queues.SimpleQueue[LeasedJob | None]
    # Filled by the signal handler: SimpleQueue.put is safe there, where setting an
    # Event (taking its lock, which the interrupted code may hold) is not.
    _signals: queues.SimpleQueue[int | None]

    def stop(self) -> None:
        """Stop pulling and shut down as on SIGTERM; ``run()`` returns when it is done.

        May be called from any thread (not from a signal handler: ``run()`` installs its
        own for SIGTERM and SIGINT).
        """
        self._request_stop()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals.put(signum)

    def _watch_signals(self) -> None:
        while self._signals.get() is not None:
            self._signalled()

    def run(self) -> None:
        """Work until ``stop()``, SIGTERM or SIGINT; then shut down gracefully.

        SIGTERM and SIGINT are handled when ``run()`` is called in the main thread.

        Raises:
            Unauthorized: the token is refused (after the same shutdown).
            Forbidden: the token may not pull from the queue.
            NotFound: the queue cannot be seen by the token.
            InvalidInput: the server refused the pull itself.
            RuntimeError: the worker ran already (make a new one).

        Retried: pulls that fail for want of an answer, 429 or 5xx are tried again after
        a jittered backoff (0.2 s doubling to 10 s), until the worker stops.
        """
        self._start()
        self._tasks, self._signals = queues.SimpleQueue(), queues.SimpleQueue()
        previous: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, self._on_signal)
        keepers = [
            threading.Thread(target=self._heartbeat, name="flashq-heartbeat", daemon=True),
            threading.Thread(target=self._flusher, name="flashq-flusher", daemon=True),
        ]
        others = [
            threading.Thread(target=self._slot, name=f"flashq-slot-{n}", daemon=True)
            for n in range(self.concurrency)
        ]
        others.append(threading.Thread(target=self._watch_signals, name="flashq-signals"))
        for thread in [*keepers, *others]:
            thread.daemon = True
            thread.start()
        fatal: FlashqError | None = None
        try:
            fatal = self._loop()
        finally:
            self.stop()
            self._shutdown(keepers)
            self._signals.put(None)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._finish()
        if fatal is not None:
            raise fatal

    def _drive(self, flow: flows.Flow) -> Any:
        return flows.drive(self.client, flow, self._force.wait)

    def _give_back(self, job: LeasedJob) -> None:
        self._drive(flows.give_back(job))

    def _pause(self, seconds: float) -> None:
        self._stop.wait(seconds)

    # -- the pulling loop (the thread that called run())

    def _loop(self) -> FlashqError | None:
        while not self._stop.is_set():
            self._wake.clear()
            if (count := self._ledger.to_pull()) <= 0:
                self._wake.wait(0.2)
                continue
            outcome: flows.PullOutcome = self._drive(flows.pull(self._ledger, count))
            if outcome.fatal is not None:
                return outcome.fatal
            run, back = self._ledger.admit(outcome.jobs, time.monotonic())
            for job in run:
                self._tasks.put(job)
            for job in back:
                self._give_back(job)
            if outcome.pause:
                self._pause(outcome.pause)
        return None

    # -- handler threads

    def _slot(self) -> None:
        while (job := self._tasks.get()) is not None:
            key = key_of(job)
            try:
                if (decision := self._ledger.begin(key)) == "give back":
                    self._give_back(job)
                elif decision == "run":
                    self._execute(job, key)
            except Exception:  # the client's own failure: the job's lease runs out
                logger.exception("job %s: could not be reported", key[0])
                self._ledger.forget(key)  # no more heartbeats for it
            self._wake.set()

    def _execute(self, job: LeasedJob, key: Key) -> None:
        sealed = False
        try:
            opened = self._opened(job)  # sealed fields: FieldDecryptionError fails the job
            sealed = opened is not job
            view = WorkerJob(opened, self.client, lambda done, text: self._report(key, done, text))
            result = self.handler(view)
        except BaseException as exc:  # a handler's SystemExit fails its job too
            self._drive(flows.finished(self._ledger, job, error=exc, sealed=sealed))
        else:
            self._drive(flows.finished(self._ledger, job, result))

    def _report(self, key: Key, progress: int, message: str) -> None:
        if self._ledger.report(key, progress, message):
            self._beat_wake.set()

    # -- heartbeats, and acks that waited too long (a thread each)

    def _heartbeat(self) -> None:
        while not self._done.is_set():
            self._beat_wake.clear()  # before: a report made while beating is sent next
            try:
                self._drive(flows.beat(self._ledger))
            except Exception:  # not the server's answer (a bug, a closed client): go on
                logger.exception("heartbeat failed")
            self._beat_wake.wait(self.settings.tick)

    def _flusher(self) -> None:
        while not self._done.wait(self.settings.tick):
            try:
                self._drive(flows.flush_due(self._ledger))
            except Exception:  # the acks were put back: the next tick or pull sends them
                logger.exception("ack flush failed")

    # -- shutdown

    def _shutdown(self, keepers: list[threading.Thread]) -> None:
        deadline = self._grace_deadline()
        while self._in_grace(deadline):
            self._wake.clear()
            self._wake.wait(0.1)
        left = self._ledger.abandon()
        self._done.set()
        self._beat_wake.set()
        for thread in keepers:
            thread.join(timeout=30)
        self._final_interrupt()
        self._drive(flows.final_flush(self._ledger))
        for job in left:
            self._give_back(job)
        for _ in range(self.concurrency):
            self._tasks.put(None)
