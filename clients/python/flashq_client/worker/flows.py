"""What the worker does with the server, written once as generators ("flows") that
yield the calls to make; the thread ``Worker`` makes them with ``Client``, the
``AsyncWorker`` awaits them on an async client. A flow gets each call's answer back, or
the ``FlashqError`` it raised thrown in, so the rules for every answer (a 409 on acks
drops them, a refused error text is sent plainer, a server without ``release`` gets a
failed attempt...) live here only.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from ..client import LeasedJob, backoff_delay
from ..errors import Conflict, FlashqError, Forbidden, InvalidInput, NotFound, Unauthorized
from .core import Key, Ledger, Pending, error_code, error_text, indices, key_of

logger = logging.getLogger("flashq_client.worker")

SHUTDOWN_ERROR = "worker shutting down"
SHUTDOWN_CODE = "worker_shutdown"
RESULT_REFUSED_CODE = "result_refused"
#: Errors after which pulling cannot succeed by waiting.
FATAL = (Unauthorized, Forbidden, NotFound)
#: The final ack flush at shutdown: pauses between its attempts (so 4 attempts), and
#: the seconds after which it starts no other.
FINAL_FLUSH_PAUSES = (1.0, 2.0, 4.0)
FINAL_FLUSH_SECONDS = 10.0

Method = Literal["pull", "ack", "ack_batch", "fail", "progress", "release"]


@dataclass(frozen=True)
class Call:
    """A client method to call: the driver sends back its answer or throws its error."""

    method: Method
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Pause:
    """Seconds to wait; the driver sends back True when a second signal cut it short."""

    seconds: float


Step = Call | Pause
Flow = Generator[Step, Any, Any]


@dataclass
class PullOutcome:
    jobs: list[LeasedJob] = field(default_factory=list)
    #: seconds to wait before the next pull (a failure's backoff, the server's ask)
    pause: float = 0.0
    #: the error that makes pulling impossible (401, 403, 404, a refused request)
    fatal: FlashqError | None = None


# -- pulling


def pull(ledger: Ledger, count: int) -> Flow:
    """Pull up to ``count`` jobs, carrying the acks waiting; returns a PullOutcome."""
    settings = ledger.settings
    taken = ledger.take_acks()
    try:
        jobs = yield Call(
            "pull",
            (settings.queue,),
            {
                "count": count,
                "lease": settings.lease,
                "wait": settings.wait,
                "ack": [pending.item for pending in taken],
            },
        )
    except Conflict as exc:
        ledger.put_back((yield from refused(ledger, taken, exc, "/ack")))
        return PullOutcome()
    except InvalidInput as exc:
        if not indices(exc, "/ack", len(taken)):
            ledger.put_back(taken)
            logger.error("pull refused: %s", exc)
            return PullOutcome(fatal=exc)
        ledger.put_back((yield from refused(ledger, taken, exc, "/ack")))
        return PullOutcome()
    except FATAL as exc:
        ledger.put_back(taken)
        logger.error("pull refused: %s", exc)
        return PullOutcome(fatal=exc)
    except FlashqError as exc:
        # No answer, 429, 5xx: the acks may or may not have been applied; a later pull
        # or ack_batch that carries them again learns which.
        ledger.put_back(taken)
        delay = backoff_delay(ledger.pull_failures)
        ledger.pull_failures += 1
        if not ledger.stopping:
            logger.warning("pull failed (%s); trying again in %.1f s", exc, delay)
        return PullOutcome(pause=delay)
    except Exception:
        ledger.put_back(taken)  # an unexpected failure: the acks wait for the next try
        raise
    ledger.pull_failures = 0
    ledger.count(completed=len(taken))
    # Nothing, at once: the server's waiting pulls are all taken and it asks for a pause
    # rather than a busy loop.
    pause = jobs.retry_after if not jobs and jobs.retry_after else 0.0
    return PullOutcome(jobs=list(jobs), pause=pause)


# -- a handler's outcome


def finished(
    ledger: Ledger,
    job: LeasedJob,
    result: Any = None,
    error: BaseException | None = None,
    *,
    sealed: bool = False,
) -> Flow:
    """A handler returned ``result`` (its ack is queued) or raised ``error`` (the job is
    failed with the class name as its code and the text, never a traceback; no text
    when the job had sealed fields: ``error_text``)."""
    key = key_of(job)
    if error is None:
        try:
            size = len(json.dumps(result, allow_nan=False).encode())  # as the server will
        except Exception as exc:  # NaN, a set, a cycle: the job fails
            error = exc
        else:
            ledger.finish(key, result, size, time.monotonic())
            return
    logger.warning("job %s failed: %s", key[0], type(error).__name__)
    if ledger.start_failing(key):
        try:
            yield from fail(key, error_text(error, sealed=sealed), code=error_code(error))
        finally:
            ledger.end_failing(key)


def fail(
    key: Key,
    error: str,
    *,
    code: str | None = None,
    plain: bool = False,
    retry: bool = True,
    delay_ms: int | None = None,
) -> Flow:
    """Fail a leased job; never raises a FlashqError."""
    job_id, lease_id = key
    try:
        yield Call(
            "fail",
            (job_id, lease_id, error),
            {"code": code, "retry": retry, "delay_ms": delay_ms},
        )
    except InvalidInput as exc:
        logger.warning("job %s: the error text was refused (%s)", job_id, exc.code)
        if not plain:  # the text itself (a card number in it, say): say less
            code_refused = any(problem["path"] == "/code" for problem in exc.errors)
            yield from fail(
                key,
                f"error text refused: {exc.code}",
                code=None if code_refused else code,
                plain=True,
                retry=retry,
                delay_ms=delay_ms,
            )
    except Conflict:
        logger.warning("job %s: its lease is gone; not failed", job_id)
    except FlashqError as exc:
        logger.warning("job %s: could not be failed (%s); it returns after its lease", job_id, exc)


def give_back(job: LeasedJob) -> Flow:
    """Back at once, the attempt not counted (release), so a shutdown never fails a job
    on its last attempt. A server without release (404 or 405 on the route) gets the old
    goodbye: a failed attempt with delay 0."""
    try:
        yield Call("release", (job["id"], job["lease_id"]))
        return
    except Conflict:
        logger.warning("job %s: its lease is gone; not given back", job["id"])
        return
    except FlashqError as exc:
        if exc.status not in (404, 405):
            logger.warning(
                "job %s: could not be given back (%s); it returns after its lease", job["id"], exc
            )
            return
    yield from fail(key_of(job), SHUTDOWN_ERROR, code=SHUTDOWN_CODE, delay_ms=0)


# -- heartbeats


def beat(ledger: Ledger) -> Flow:
    """Send the heartbeats due: each the progress and message the handler last
    reported (the pulled progress and no message until it reports)."""
    for due in ledger.due_beats(time.monotonic()):
        job_id, lease_id = due.key
        try:
            yield Call("progress", (job_id, lease_id, due.progress, due.message))
        except (Conflict, NotFound) as exc:
            ledger.beat_refused(due.key)
            logger.warning(
                "job %s: heartbeat refused (%s): cancelled or lease lost; its result will be "
                "dropped",
                job_id,
                exc.code,
            )
        except InvalidInput as exc:
            ledger.message_refused(due.key)
            logger.warning("job %s: the progress message was refused (%s)", job_id, exc.code)
        except FlashqError as exc:
            logger.warning("job %s: heartbeat failed (%s)", job_id, exc)


# -- acks


def flush_due(ledger: Ledger) -> Flow:
    """Send the acks alone when one has waited too long for a pull."""
    if ledger.acks_due(time.monotonic()):
        taken = ledger.take_acks()
        try:
            left = yield from send_acks(ledger, taken)
        except Exception:
            ledger.put_back(taken)  # an unexpected failure: repeated acks are answered
            raise
        ledger.put_back(left)


def final_flush(ledger: Ledger) -> Flow:
    """At shutdown: every ack waiting, tried again after 1, 2 and 4 s while some cannot
    be delivered (no answer, 5xx), none started later than FINAL_FLUSH_SECONDS after the
    first (nor after a second signal); what is still undelivered then is logged at
    ERROR, by job and lease id."""
    deadline = time.monotonic() + FINAL_FLUSH_SECONDS
    undelivered: list[Pending] = []
    for pause in (0.0, *FINAL_FLUSH_PAUSES):
        if undelivered:
            if time.monotonic() + pause > deadline:
                break
            logger.warning(
                "%d ack(s) not delivered; trying again in %.0f s", len(undelivered), pause
            )
            ledger.put_back(undelivered)
            undelivered = []
            if (yield Pause(pause)):
                break
        while taken := ledger.take_acks():
            undelivered += yield from send_acks(ledger, taken)
        if not undelivered:
            break
    undelivered += ledger.take_acks()
    if undelivered:
        logger.error(
            "could not deliver the acks of %d finished job(s); they run again after their "
            "leases: %s",
            len(undelivered),
            ", ".join(f"{p.item['id']} (lease {p.item['lease_id']})" for p in undelivered),
        )


def send_acks(ledger: Ledger, items: list[Pending]) -> Flow:
    """Ack ``items`` with ack_batch (on an error naming no item, one by one); returns
    those that could not be delivered (no answer, 5xx), to send again."""
    if not items:
        return []
    try:
        acked = yield Call("ack_batch", ([pending.item for pending in items],))
    except (Conflict, InvalidInput) as exc:
        if indices(exc, "/jobs", len(items)):
            return (yield from refused(ledger, items, exc, "/jobs"))
        return (yield from ack_each(ledger, items))
    except NotFound:  # a job deleted meanwhile
        return (yield from ack_each(ledger, items))
    except FlashqError as exc:
        logger.warning("ack_batch failed (%s)", exc)
        return items
    ledger.count(completed=acked)
    return []


def ack_each(ledger: Ledger, items: list[Pending]) -> Flow:
    undelivered = []
    for pending in items:
        item = pending.item
        try:
            yield Call("ack", (item["id"], item["lease_id"], item.get("result")))
        except (Conflict, NotFound) as exc:
            logger.warning("dropped the ack of job %s (%s)", item["id"], exc.code)
        except InvalidInput as exc:
            yield from result_refused(ledger, pending, exc)
        except FlashqError as exc:
            logger.warning("ack of job %s failed (%s)", item["id"], exc)
            undelivered.append(pending)
        else:
            ledger.count(completed=1)
    return undelivered


def refused(ledger: Ledger, items: list[Pending], error: FlashqError, root: str) -> Flow:
    """Settle acks the server refused (all of them: acks are all or nothing); returns
    those it did not name, to send again."""
    named = indices(error, root, len(items))
    if isinstance(error, Conflict):
        dropped = [items[i] for i in sorted(named)] if named else items
        logger.warning(
            "dropped %d ack(s) refused as stale (already applied, lease expired or job "
            "cancelled): %s (request %s)",
            len(dropped),
            ", ".join(pending.item["id"] for pending in dropped),
            error.request_id,
        )
        return [items[i] for i in range(len(items)) if named and i not in named]
    # A result refused (too large, a card number in it): the job fails instead.
    for i in sorted(named):
        yield from result_refused(ledger, items[i], error)
    return [items[i] for i in range(len(items)) if i not in named]


def result_refused(ledger: Ledger, pending: Pending, error: FlashqError) -> Flow:
    item = pending.item
    logger.warning("job %s: its result was refused (%s); failing it", item["id"], error.code)
    # Not retried: running it again would only have its result refused again.
    yield from fail(
        (item["id"], item["lease_id"]),
        f"result refused: {error.detail}",
        code=RESULT_REFUSED_CODE,
        retry=False,
    )
    ledger.count(failed=1)


# -- drivers: make a flow's calls


class _Driving:
    """Walks a flow: each item is a thunk to call (a client method, a pause) whose
    answer goes into ``answer``, or its error into ``error``; ``result`` at the end."""

    def __init__(self, flow: Flow, client: Any, pause: Callable[[float], Any]) -> None:
        self._flow, self._client, self._pause = flow, client, pause
        self.answer: Any = None
        self.error: FlashqError | None = None
        self.result: Any = None

    def __iter__(self) -> Iterator[Callable[[], Any]]:
        while True:
            try:
                step = self._flow.throw(self.error) if self.error else self._flow.send(self.answer)
            except StopIteration as stop:
                self.result = stop.value
                return
            self.answer, self.error = None, None
            if isinstance(step, Pause):
                yield functools.partial(self._pause, step.seconds)
            else:
                yield functools.partial(
                    getattr(self._client, step.method), *step.args, **step.kwargs
                )


def drive(client: Any, flow: Flow, pause: Callable[[float], bool]) -> Any:
    """Run ``flow`` with a sync client (``Client``); returns what the flow returns."""
    driving = _Driving(flow, client, pause)
    for call in driving:
        try:
            driving.answer = call()
        except FlashqError as exc:
            driving.error = exc
    return driving.result


async def adrive(client: Any, flow: Flow, pause: Callable[[float], Awaitable[bool]]) -> Any:
    """Run ``flow`` with an async client (its methods are coroutines)."""
    driving = _Driving(flow, client, pause)
    for call in driving:
        try:
            driving.answer = await call()
        except FlashqError as exc:
            driving.error = exc
    return driving.result
