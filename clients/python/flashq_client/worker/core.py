"""The worker's bookkeeping, without I/O: one implementation for the thread ``Worker``
and the ``AsyncWorker``.

A job in hand is keyed by ``(job id, lease id)``: a job whose lease ran out and that the
same worker pulled again is a second, separate job in hand, and the first run's result
can neither take the second's place nor drop it. The ledger holds the jobs in hand, the
finished jobs' acks waiting to be sent, the handlers' reported progress, and the counts;
it decides what is run, what is given back and what a heartbeat sends. A lock guards it
(handler threads, the heartbeat and the flusher share it); it is never held across I/O,
so the asyncio worker takes it without blocking its loop.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..client import AckItem, LeasedJob
from ..errors import FieldDecryptionError, FlashqError

logger = logging.getLogger("flashq_client.worker")

#: ``(job id, lease id)``: one job in hand.
Key = tuple[str, str]

MAX_CODE_CHARS = 64
# What a failure code may not hold (the server takes 1 to 64 of [A-Za-z0-9._-]).
_NOT_IN_CODE = re.compile(r"[^A-Za-z0-9._-]")
MAX_ERROR_CHARS = 1000
#: The longest progress message the server keeps (longer ones are cut to it).
MAX_PROGRESS_MESSAGE = 1000
MAX_BATCH = 1000
# Acks sent in one request carry at most this many bytes of results (one bigger result
# goes alone): a pull body must stay under the server's MAX_REQUEST_BYTES (10 MiB) and a
# batch ack's under MAX_ACK_BATCH_BYTES (2 MiB), whatever the handlers return.
MAX_ACK_RESULT_BYTES = 1024 * 1024
#: Seconds a finished job's ack may wait for the next pull before it is sent alone.
ACK_FLUSH_SECONDS = 1.0


def key_of(job: LeasedJob) -> Key:
    """The key of a leased job in hand."""
    return (job["id"], job["lease_id"])


def error_code(exc: BaseException) -> str:
    """The exception's class name as a failure code.

    Characters the server does not take in a code (a non-ASCII letter of an identifier)
    become ``_``; the name is cut to 64 characters.

    Args:
        exc: The exception a handler raised.

    Returns:
        A code the server takes, such as ``"ValueError"``; a sealed field that does
        not open gives its own (``field_key_missing``, ``field_open_failed``).
    """
    if isinstance(exc, FieldDecryptionError):
        return exc.code
    return _NOT_IN_CODE.sub("_", type(exc).__name__)[:MAX_CODE_CHARS]


#: A failure's text for a job with end-to-end encrypted fields: the exception's own text
#: could quote an opened value, which the server must never see in clear.
WITHHELD_TEXT = "text withheld: the job has encrypted fields, which it could quote"


def error_text(exc: BaseException, *, sealed: bool = False) -> str:
    """A failure's text: the exception's first 1000 characters (the class name goes in
    the code); never a traceback or its locals. ``sealed`` (the job's data had sealed
    fields, opened for the handler): ``WITHHELD_TEXT`` instead, unless the failure is
    the opening itself (its text names the field and key id only)."""
    if sealed and not isinstance(exc, FieldDecryptionError):
        return WITHHELD_TEXT
    return str(exc)[:MAX_ERROR_CHARS]


def indices(error: FlashqError, root: str, size: int) -> set[int]:
    """Which items of a list sent as ``root`` (``/ack``, ``/jobs``) the error names."""
    pattern = re.compile(re.escape(root) + r"/(\d+)(?:/|$)")
    found = set()
    for problem in error.errors:
        match = pattern.match(problem["path"])
        if match and int(match.group(1)) < size:
            found.add(int(match.group(1)))
    return found


@dataclass(frozen=True)
class Settings:
    """A worker's settings, checked once for both kinds of worker."""

    queue: str
    concurrency: int = 1
    lease: int = 30
    batch: int | None = None
    wait: float = 20.0
    heartbeat: float | None = None
    grace: float = 20.0

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.lease < 1:
            raise ValueError("lease must be at least 1 second")
        if self.batch is not None and not 1 <= self.batch <= MAX_BATCH:
            raise ValueError(f"batch must be 1 to {MAX_BATCH}")
        if self.wait < 0 or self.grace < 0:
            raise ValueError("wait and grace cannot be negative")
        if self.heartbeat is not None and self.heartbeat <= 0:
            raise ValueError("heartbeat must be positive")

    @property
    def beat_every(self) -> float:
        """Seconds between a running job's heartbeats (default: a third of the lease)."""
        return self.heartbeat if self.heartbeat is not None else self.lease / 3

    @property
    def flush_after(self) -> float:
        """Seconds a finished job's ack waits for a pull before it is sent alone."""
        return min(ACK_FLUSH_SECONDS, self.lease / 4)

    @property
    def tick(self) -> float:
        """How often the heartbeat and the flusher look for work."""
        return max(0.05, min(0.25, self.beat_every / 4, self.flush_after / 2))


@dataclass(eq=False)
class Held:
    """A job in hand."""

    job: LeasedJob
    last_beat: float
    #: queued: waiting for its slot; running: in the handler; reporting: being failed
    state: Literal["queued", "running", "reporting"] = "queued"
    #: the lease is gone (a heartbeat got 409 or 404): the result will be dropped
    lost: bool = False
    #: given back at shutdown: the result will be dropped
    abandoned: bool = False
    #: what the handler last reported, which every heartbeat sends again
    progress: int = 0
    message: str = ""
    #: reported and not sent yet
    reported: bool = False


@dataclass(frozen=True)
class Beat:
    """A heartbeat to send: the progress and message the job's handler last reported."""

    key: Key
    progress: int
    message: str


@dataclass(eq=False)
class Pending:
    """A finished job waiting for its ack."""

    item: AckItem
    since: float
    size: int = 0  # its result's encoded bytes


class Ledger:
    """The jobs in hand, the acks waiting to go and the counts; no I/O."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self.held: dict[Key, Held] = {}
        self.acks: list[Pending] = []
        #: Jobs completed (acked) and failed so far.
        self.completed = 0
        self.failed = 0
        #: Pulls failed in a row (for the pause before the next).
        self.pull_failures = 0
        #: Set once, when the worker starts shutting down.
        self.stopping = False

    def count(self, *, completed: int = 0, failed: int = 0) -> None:
        with self._lock:
            self.completed += completed
            self.failed += failed

    # -- jobs in hand

    def free(self) -> int:
        """Slots free for more jobs."""
        with self._lock:
            return self.settings.concurrency - len(self.held)

    def to_pull(self) -> int:
        """How many jobs the next pull asks for: the free slots, at most ``batch``."""
        free = self.free()
        return min(free, self.settings.batch or free)

    def busy(self) -> int:
        with self._lock:
            return len(self.held)

    def admit(
        self, jobs: Sequence[LeasedJob], now: float
    ) -> tuple[list[LeasedJob], list[LeasedJob]]:
        """Take pulled jobs in hand: those to run, and those to give back at once (the
        pull landed after the worker began to stop)."""
        run, back = [], []
        with self._lock:
            for job in jobs:
                if self.stopping:
                    logger.warning("job %s pulled after the signal; giving it back", job["id"])
                    back.append(job)
                    continue
                self.held[key_of(job)] = Held(job, last_beat=now, progress=job["progress"])
                run.append(job)
        return run, back

    def begin(self, key: Key) -> Literal["run", "give back", "gone"]:
        """A slot is about to run a job: run it, or give it back (the worker is stopping
        and its handler has not started), or nothing (given back already)."""
        with self._lock:
            held = self.held.get(key)
            if held is None or held.state != "queued":
                return "gone"
            if self.stopping:
                del self.held[key]
                logger.warning("job %s not started before the signal; giving it back", key[0])
                return "give back"
            held.state = "running"
            return "run"

    def finish(self, key: Key, result: Any, size: int, now: float) -> None:
        """The handler returned: queue its ack (unless the job is no longer ours)."""
        with self._lock:
            held = self.held.pop(key, None)
            if held is not None and not (held.lost or held.abandoned):
                item: AckItem = {"id": key[0], "lease_id": key[1], "result": result}
                self.acks.append(Pending(item, now, size))
                return
        if held is not None:
            why = "given back at shutdown" if held.abandoned else "its lease was lost"
            logger.warning("job %s finished after %s; its result is dropped", key[0], why)

    def start_failing(self, key: Key) -> bool:
        """The handler raised: whether to report the failure (False when the job is no
        longer ours, and then it is forgotten)."""
        with self._lock:
            held = self.held.get(key)
            if held is None or held.lost or held.abandoned:
                self.held.pop(key, None)
                return False
            held.state = "reporting"
            return True

    def end_failing(self, key: Key) -> None:
        with self._lock:
            self.held.pop(key, None)
            self.failed += 1

    def forget(self, key: Key) -> None:
        with self._lock:
            self.held.pop(key, None)

    def abandon(self) -> list[LeasedJob]:
        """The grace is over: the jobs to give back (not finished, not being failed);
        their handlers' results will be dropped."""
        with self._lock:
            left = [held for held in self.held.values() if held.state != "reporting"]
            for held in left:
                logger.warning("job %s not finished in time; giving it back", held.job["id"])
                held.abandoned = True
                if held.state == "queued":  # its slot will find it gone
                    del self.held[key_of(held.job)]
        return [held.job for held in left]

    # -- progress and heartbeats

    def report(self, key: Key, progress: int, message: str) -> bool:
        """A handler's progress, to be sent at once and with every later heartbeat;
        False when the job is no longer in hand."""
        if isinstance(progress, bool) or not isinstance(progress, int):
            raise TypeError("progress must be an int from 0 to 100")
        if not 0 <= progress <= 100:
            raise ValueError("progress must be from 0 to 100")
        if not isinstance(message, str):
            raise TypeError("message must be a str")
        with self._lock:
            held = self.held.get(key)
            if held is None or held.lost or held.abandoned:
                return False
            held.progress, held.message = progress, message[:MAX_PROGRESS_MESSAGE]
            held.reported = True
            return True

    def due_beats(self, now: float) -> list[Beat]:
        """The heartbeats due now: a job reported on, or not beaten for ``beat_every``."""
        every = self.settings.beat_every
        with self._lock:
            due = [
                held
                for held in self.held.values()
                if held.state != "reporting"
                and not (held.lost or held.abandoned)
                and (held.reported or now - held.last_beat >= every)
            ]
            for held in due:
                held.last_beat, held.reported = now, False
            return [Beat(key_of(held.job), held.progress, held.message) for held in due]

    def beat_refused(self, key: Key) -> None:
        """The lease is gone (cancelled, expired): the result will be dropped."""
        with self._lock:
            if (held := self.held.get(key)) is not None:
                held.lost = True

    def message_refused(self, key: Key) -> None:
        """The server refused the reported message (a card number in it): the next
        heartbeat, at once, goes without it."""
        with self._lock:
            if (held := self.held.get(key)) is not None:
                held.message, held.reported = "", True

    # -- acks

    def take_acks(self) -> list[Pending]:
        """The next acks to send: at most MAX_BATCH, and MAX_ACK_RESULT_BYTES of results
        (but always the first, whatever its size: alone it fits)."""
        with self._lock:
            count, total = 0, 0
            for pending in self.acks[:MAX_BATCH]:
                if count and total + pending.size > MAX_ACK_RESULT_BYTES:
                    break
                count, total = count + 1, total + pending.size
            taken, self.acks = self.acks[:count], self.acks[count:]
        return taken

    def put_back(self, items: Iterable[Pending]) -> None:
        items = list(items)
        if items:
            with self._lock:
                self.acks[:0] = items

    def acks_due(self, now: float) -> bool:
        """An ack has waited ``flush_after`` for a pull: send the acks alone."""
        with self._lock:
            return any(now - pending.since >= self.settings.flush_after for pending in self.acks)
