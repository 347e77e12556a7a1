"""One listener per process for every waiting request (a long-polling pull, a job wait),
so that a wait holds neither a thread nor a database session of its own.

On PostgreSQL a daemon thread owns two sessions: one LISTENs on ``wakeup.CHANNEL``
(payload: a queue with new work) and ``dependents.DONE_CHANNEL`` (payload: a watched job
that finished); the other holds the waiters' advisory lock of each queue this process
has waiters on (``flashq_wait_begin`` for the first, ``flashq_wait_end`` when the last
leaves), which is what makes a push NOTIFY at all (queues.wakeup). A waiter registers a
``Wake`` (an asyncio event and its loop) by queue or by job id; the thread sets it with
``loop.call_soon_threadsafe``.

No wake-up is missed, by the argument of queues.wakeup, per process instead of per
session: a waiter registers its ``Wake`` first, then has the queue's lock taken (and
drained: every push that checked for waiters before the lock was taken has committed),
then claims, then waits. A notification dispatched after the registration sets its
event, however long the claim took (the event stays set, as psycopg's backlog did); one
dispatched before it belongs to a push that committed before it, which the claim sees.
A queue's lock is drained once: later waiters on a queue held and drained need nothing
more, since every push that checked since then NOTIFYs. If the drain could not finish
(pushes kept coming), later waiters try it again and the first slice is short
(``wakeup.UNDRAINED_SLICE_SECONDS``).

A waiting pull's first round runs before it registers (in the request's dispatch, which
must find out first whether there is work at all), so it takes a ``Mark`` of its queue
just before that round. A push that commits after the round began finds the queue's
lock held (a mark is only given while it is held and drained) and NOTIFYs; its
dispatch, which comes after its commit, bumps the queue's mark. So if the mark is
unchanged when the waiter registers, nothing was dispatched in between, and whatever
comes later sets the waiter's event: the waiter is ``covered`` and need not claim
again before it waits. A lock given back, a drain undone and a reset bump the marks too.
Joining and leaving a queue whose lock this process already holds and has drained is
bookkeeping alone, done on the event loop without a thread; only the first waiter and
the last one talk to the database.

Some work comes with no NOTIFY: a delayed job whose ``run_at`` passes, a lease that
runs out. Rather than have every waiting pull claim again each second (2,000 waiters
would be 2,000 claims a second), the listener looks once every ``SWEEP_SECONDS`` for
queues with waiters and ready work, in one statement, and wakes theirs. A job wait
still reads its job every ``wakeup.SLICE_SECONDS`` (a ttl that runs out sends nothing).

If a session drops, the thread reconnects, takes every held lock again and then wakes
every waiter, who claims (or reads) again: whatever committed meanwhile is seen. The
lock session, otherwise used only when a waiter comes or goes, is checked at every
sweep, so its quiet death is noticed within a second too. A
waiter that registers while the listener is down is refused with ``OperationalError``
(the API's 503). SQLite has no NOTIFY: a ``Wake`` there simply sleeps a short poll."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import psycopg
from django.db import OperationalError, connection

from .dependents import DONE_CHANNEL
from .wakes import Mark, Wake
from .wakeup import CHANNEL

logger = logging.getLogger("flashq.notifier")

#: How long a registering waiter waits for the listener to (re)connect before a 503.
READY_TIMEOUT_SECONDS = 5.0
RECONNECT_DELAY_SECONDS = 0.5
APPLICATION_NAME = "flashq-notifier"
#: How often the listener looks for ready work its waiters were not told about.
SWEEP_SECONDS = 1.0


def _connect_params() -> dict[str, Any]:
    params = dict(connection.get_connection_params())
    for key in ("cursor_factory", "context", "prepare_threshold"):
        params.pop(key, None)
    params["application_name"] = APPLICATION_NAME  # in pg_stat_activity, for operators
    return params


class Notifier:
    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        self.pid = os.getpid()
        # Never held across I/O: the registrations, which queues' locks are held and
        # drained, and the marks. Taken on the event loop too.
        self._guard = threading.Lock()
        self._by_queue: dict[str, set[Wake]] = {}
        self._by_job: dict[str, set[Wake]] = {}
        self._held: dict[str, int] = {}  # queue -> waiters of this process on it
        self._drained: set[str] = set()
        self._epoch = 0  # bumped by every reset (a notification may have been lost)
        self._bumps = 0  # the last value given to a queue's seq (never reused)
        self._seq: dict[str, int] = {}  # held queue -> its seq, bumped by each dispatch
        self._empty: dict[str, Mark] = {}  # held queue -> its mark when a claim found nothing
        self._locking = threading.Lock()  # the lock session (its use is serialised)
        self._lock_session: psycopg.Connection[Any] | None = None
        self._ready = threading.Event()
        self._broken = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flashq-notifier", daemon=True)
        self._thread.start()

    # -- the waiters' side --------------------------------------------------------------

    def mark(self, queue: str) -> Mark | None:
        """The queue's mark, if this process holds its lock drained (else None: a
        waiter registering later cannot be covered)."""
        with self._guard:
            return self._mark(queue)

    def saw_nothing(self, queue: str, mark: Mark | None) -> None:
        """A claim that began at ``mark`` found nothing in ``queue`` to hand out."""
        with self._guard:
            if mark is not None and self._mark(queue) == mark:
                self._empty[queue] = mark

    def known_empty(self, queue: str, mark: Mark | None) -> bool:
        """Whether a claim found nothing in ``queue`` at ``mark``, the current mark:
        then nothing was dispatched for it since, and whatever comes next will be."""
        with self._guard:
            return mark is not None and self._empty.get(queue) == mark == self._mark(queue)

    def _mark(self, queue: str) -> Mark | None:
        if not self._ready.is_set() or not self._held.get(queue) or queue not in self._drained:
            return None
        return Mark(self._epoch, self._seq[queue])

    def _bump(self, queue: str) -> None:
        """Under ``_guard``: whatever was dispatched or changed for ``queue``."""
        if queue in self._seq:
            self._bumps += 1
            self._seq[queue] = self._bumps

    def try_join_queue(self, queue: str, wake: Wake, mark: Mark | None) -> bool:
        """Register ``wake`` at once if this process holds the queue's lock drained
        (no I/O: safe on the event loop); ``wake.covered`` if ``mark`` is unchanged.
        False: ``join_queue`` must run, in a thread."""
        with self._guard:
            now = self._mark(queue)
            if now is None:
                return False
            self._by_queue.setdefault(queue, set()).add(wake)
            self._held[queue] += 1
            wake.drained = True
            wake.covered = mark is not None and mark == now
            return True

    def join_queue(self, queue: str, wake: Wake) -> None:
        """Register ``wake`` for ``queue`` and make sure the queue's lock is held and
        drained (``wake.drained`` says whether the drain finished). Blocks on the
        database: in a thread."""
        with self._guard:
            self._by_queue.setdefault(queue, set()).add(wake)
        try:
            self._await_ready()
            with self._locking:
                session = self._session()
                with self._guard:
                    held = self._held.get(queue, 0)
                    was_drained = queue in self._drained
                drained = was_drained
                if not held or not was_drained:
                    # The first waiter takes the lock; a later one, while it is not
                    # drained, takes it once more to drain and gives that back at once.
                    drained = _begin(session, queue)
                    if held:
                        session.execute("SELECT flashq_wait_end(%s)", [queue])
                with self._guard:
                    self._held[queue] = self._held.get(queue, 0) + 1
                    self._seq.setdefault(queue, 0)
                    if drained:
                        self._drained.add(queue)
                    if not was_drained:
                        self._bump(queue)
                    wake.drained = queue in self._drained
        except psycopg.Error as exc:
            self._forget(self._by_queue, queue, wake)
            self._broken.set()
            raise OperationalError(f"the wake-up listener failed: {exc}") from exc
        except BaseException:
            self._forget(self._by_queue, queue, wake)
            raise

    def try_leave_queue(self, queue: str, wake: Wake) -> bool:
        """Unregister ``wake`` at once if other waiters of this process stay on the
        queue (no I/O). False: ``leave_queue`` must run, in a thread."""
        with self._guard:
            if self._held.get(queue, 0) <= 1:
                return False
            self._held[queue] -= 1
            self._forget_locked(self._by_queue, queue, wake)
            return True

    def leave_queue(self, queue: str, wake: Wake) -> None:
        with self._locking:
            with self._guard:
                self._forget_locked(self._by_queue, queue, wake)
                left = self._held.get(queue, 0) - 1
                if left > 0:
                    self._held[queue] = left
                    return
                self._bump(queue)
                self._held.pop(queue, None)
                self._seq.pop(queue, None)
                self._empty.pop(queue, None)
                self._drained.discard(queue)
            try:
                if self._lock_session is not None:
                    self._lock_session.execute("SELECT flashq_wait_end(%s)", [queue])
            except psycopg.Error:
                self._broken.set()  # the reset takes the locks still wanted again

    def try_join_job(self, job_id: str, wake: Wake) -> bool:
        """Register ``wake`` for the job if the listener is up (no I/O)."""
        with self._guard:
            if not self._ready.is_set():
                return False
            self._by_job.setdefault(job_id, set()).add(wake)
            return True

    def join_job(self, job_id: str, wake: Wake) -> None:
        with self._guard:
            self._by_job.setdefault(job_id, set()).add(wake)
        try:
            self._await_ready()
        except BaseException:
            self._forget(self._by_job, job_id, wake)
            raise

    def leave_job(self, job_id: str, wake: Wake) -> None:
        self._forget(self._by_job, job_id, wake)

    def _await_ready(self) -> None:
        if not self._ready.wait(READY_TIMEOUT_SECONDS):
            raise OperationalError("the wake-up listener is not connected")

    def _forget(self, table: dict[str, set[Wake]], key: str, wake: Wake) -> None:
        with self._guard:
            self._forget_locked(table, key, wake)

    @staticmethod
    def _forget_locked(table: dict[str, set[Wake]], key: str, wake: Wake) -> None:
        wakes = table.get(key)
        if wakes is not None:
            wakes.discard(wake)
            if not wakes:
                del table[key]

    def _session(self) -> psycopg.Connection[Any]:
        """The lock session (under ``_locking``), opened again with every lock still
        wanted if it was lost."""
        if self._lock_session is None or self._lock_session.closed:
            with self._guard:
                self._epoch += 1
                self._drained.clear()
                queues = list(self._held)
            self._lock_session = psycopg.connect(**self.params, autocommit=True)
            for queue in queues:
                if _begin(self._lock_session, queue):
                    with self._guard:
                        self._drained.add(queue)
        return self._lock_session

    # -- the listener thread ---------------------------------------------------------------

    def close(self) -> None:
        """Stop listening and close both sessions (the test run's end: the test
        database cannot be dropped while they are open)."""
        self._stopping.set()
        self._broken.set()
        self._thread.join(timeout=5)
        with self._locking:
            if self._lock_session is not None:
                self._lock_session.close()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                with psycopg.connect(**self.params, autocommit=True) as listener:
                    listener.execute(f"LISTEN {CHANNEL}")
                    listener.execute(f"LISTEN {DONE_CHANNEL}")
                    with self._locking:
                        if self._lock_session is not None:
                            self._lock_session.close()
                        self._session()
                    self._broken.clear()
                    self._ready.set()
                    self._wake_everyone()
                    swept = time.monotonic()
                    while not self._broken.is_set():
                        for notify in listener.notifies(timeout=0.5):
                            self._dispatch(notify.channel, notify.payload)
                        if time.monotonic() - swept >= SWEEP_SECONDS:
                            swept = time.monotonic()
                            self._check_lock_session()
                            self._sweep(listener)
            except psycopg.Error as exc:
                logger.warning("wake-up listener lost its database: %s", type(exc).__name__)
            self._ready.clear()
            self._wake_everyone()
            if not self._stopping.is_set():
                time.sleep(RECONNECT_DELAY_SECONDS)

    def _check_lock_session(self) -> None:
        """Raise psycopg.Error if the lock session died quietly (terminated, its
        connection cut): its locks went with it and pushes stopped NOTIFYing. The
        reset that follows opens it again, takes the locks and wakes everyone."""
        with self._locking:
            if self._lock_session is not None:
                self._lock_session.execute("SELECT 1")

    def _sweep(self, listener: psycopg.Connection[Any]) -> None:
        """Wake the waiters of every queue that has work ready nobody told them about:
        a delayed job whose time came, a lease that ran out (no push, no NOTIFY)."""
        with self._guard:
            queues = list(self._held)
        if not queues:
            return
        for (queue,) in listener.execute(_READY_SQL, [queues]).fetchall():
            self._dispatch(CHANNEL, queue)

    def _dispatch(self, channel: str, payload: str) -> None:
        table = self._by_queue if channel == CHANNEL else self._by_job
        with self._guard:
            if channel == CHANNEL:
                self._bump(payload)
            wakes = list(table.get(payload, ()))
        for wake in wakes:
            wake.set()

    def _wake_everyone(self) -> None:
        with self._guard:
            self._epoch += 1
            wakes = [
                wake
                for table in (self._by_queue, self._by_job)
                for ws in table.values()
                for wake in ws
            ]
        for wake in wakes:
            wake.set()


# job_ready_idx and job_lease_idx answer both EXISTS; one statement per sweep.
_READY_SQL = """
SELECT q.name FROM queues_queue q WHERE q.name = ANY(%s) AND NOT q.paused AND (
    EXISTS (SELECT 1 FROM queues_job j WHERE j.queue_id = q.id AND j.state = 'waiting'
        AND j.run_at <= now() AND (j.expires_at IS NULL OR j.expires_at > now()))
    OR EXISTS (SELECT 1 FROM queues_job j WHERE j.queue_id = q.id AND j.state = 'active'
        AND j.lease_expires_at <= now()))
"""


def _begin(session: psycopg.Connection[Any], queue: str) -> bool:
    """Take the queue's waiters' lock (once more) and try to drain: whether it did."""
    row = session.execute("SELECT flashq_wait_begin(%s)", [queue]).fetchone()
    return bool(row and row[0])


_notifier: Notifier | None = None
_creating = threading.Lock()


def notifier() -> Notifier:
    """This process's notifier (a forked worker starts its own)."""
    global _notifier
    with _creating:
        if _notifier is None or _notifier.pid != os.getpid():
            _notifier = Notifier(_connect_params())
        return _notifier


def close_notifier() -> None:
    """Close this process's notifier, if it has one."""
    global _notifier
    with _creating:
        if _notifier is not None and _notifier.pid == os.getpid():
            _notifier.close()
        _notifier = None
