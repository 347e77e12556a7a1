"""The waiting of a long-polling pull and of a job wait, on the event loop: each round
(a claim, a read) runs in a short-lived thread (kernel.blocking) and the time between
rounds is an await on the process's listener (queues.notifier), so a waiting request
holds no thread and no database connection.

Both take a slot of their token family first (``waitslots``): past the caps they answer
at once. A client that hangs up mid-wait cancels the request (the ASGI server tells
Django, which cancels the view): the slot and the listener's registration are given
back at once, and the call still gets its one event (a pull nothing, a job wait the job
as it is), unless a round in flight already recorded it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection

from compliance.audit import Actor
from kernel.blocking import blocking
from kernel.counters import LONG_POLLS_OVER_CAP

from . import jobwait
from .notifier import notifier
from .pulling import Pulled, PullSpec
from .services import AckSpec
from .waitslots import wait_slot
from .wakes import Mark, Wake
from .wakeup import SLICE_SECONDS


class PullWait:
    """A waiting pull, from its first round to its answer, in three steps: ``begin``
    (in the dispatch's thread), ``wait`` (on the event loop) and ``finish`` (in the
    thread that renders the answer). A wait that ends with no work owes the call's
    event, and perhaps a last claim: ``finish`` does that, in the thread the answer
    needs anyway. A pull that comes back to an idle queue this process already waits
    on, and ends its wait unwoken, costs two hops to a thread and one transaction (its
    event): no claim at all (queues.notifier's marks)."""

    def __init__(self, spec: PullSpec, *, deadline: float) -> None:
        self.spec = spec
        self.deadline = deadline
        self._mark: Mark | None = None

    def begin(self, *, acks: Sequence[AckSpec] = ()) -> Pulled | None:
        """The first round (``PullSpec.begin``), after taking the queue's mark; none
        at all if a claim at that mark already found nothing (and there are no acks to
        complete): a returning long poll on an idle queue then costs no claim."""
        queue = self.spec.queue_name
        self._mark = queue_mark(queue)
        if not acks and queue_known_empty(queue, self._mark):
            return None
        pulled = self.spec.begin(acks=acks, then_wait=True)
        if pulled is None:
            queue_saw_nothing(queue, self._mark)
        return pulled

    async def wait(self) -> Pulled | LastRound:
        """After a first round that found nothing: wait until work comes or the
        deadline passes, claiming again when woken. What it leased, or what the last
        round (``finish``) still has to do."""
        spec, deadline = self.spec, self.deadline
        with wait_slot(spec.owner) as may_wait:
            if not may_wait:
                # Work may have come meanwhile: one more round, then an answer at once.
                LONG_POLLS_OVER_CAP.inc()
                return LastRound(claim=True, over_cap=True)
            recorded = False
            round_: asyncio.Future[list[Any] | None] | None = None
            try:
                async with queue_wakes(spec.queue_name, self._mark) as wake:
                    look = not wake.covered  # the first round may have missed a push
                    while True:
                        if look:
                            if deadline - time.monotonic() <= 0:
                                return LastRound(claim=True)
                            mark = queue_mark(spec.queue_name)
                            round_ = asyncio.ensure_future(blocking(spec.claim, last=False))
                            jobs = await asyncio.shield(round_)
                            if jobs is not None:
                                recorded = True
                                return Pulled(jobs)
                            queue_saw_nothing(spec.queue_name, mark)
                        left = deadline - time.monotonic()
                        if left <= 0:
                            return LastRound(claim=False)  # nothing came: nothing to claim
                        look = await wake.wait(left)
            except asyncio.CancelledError:
                if not recorded and not await _recorded(round_):
                    await blocking(spec.abandon)
                raise

    def finish(self, ended: Pulled | LastRound) -> Pulled:
        """What the pull answers (in a thread): the last round done, if one is owed."""
        if isinstance(ended, Pulled):
            return ended
        pulled = Pulled(self.spec.claim(last=True) or []) if ended.claim else self.spec.nothing()
        if not pulled and ended.over_cap:
            pulled.retry_after_s = settings.LONG_POLL_RETRY_AFTER_SECONDS
        return pulled


@dataclass(frozen=True)
class LastRound:
    """A wait that ended with nothing leased: whether the last round must claim (work
    may have come since the last look) or only record that nothing came, and whether
    the pull was refused a wait (its answer then carries ``Retry-After``)."""

    claim: bool
    over_cap: bool = False


async def _recorded(round_: asyncio.Future[list[Any] | None] | None) -> bool:
    """Whether the round (perhaps still in its thread) recorded the call's event."""
    if round_ is None:
        return False
    await asyncio.wait([round_])
    return not round_.cancelled() and round_.exception() is None and round_.result() is not None


async def job_wait(
    *, job_id: uuid.UUID, timeout_ms: int, owner: str, actor: Actor
) -> jobwait.Waited:
    """Wait up to ``timeout_ms`` for the job to finish (queues.jobwait); ``owner`` is
    the caller's token family, whose long polls are capped."""
    deadline = time.monotonic() + timeout_ms / 1000
    try:
        settled = timeout_ms <= 0 or await blocking(jobwait.job_settled, job_id)
    except asyncio.CancelledError:  # gone before it waited: still its one event
        await blocking(jobwait.job_answer, job_id, actor)
        raise
    if settled:
        return await blocking(jobwait.job_answer, job_id, actor)
    with wait_slot(owner) as may_wait:
        if not may_wait:
            LONG_POLLS_OVER_CAP.inc()
            return await blocking(jobwait.job_answer, job_id, actor, over_cap=True)
        try:
            async with job_wakes(str(job_id)) as wake:
                await blocking(jobwait.job_watch, job_id)
                while not await blocking(jobwait.job_settled, job_id):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    await wake.wait(left)
        except asyncio.CancelledError:
            await blocking(jobwait.job_answer, job_id, actor)
            raise
    return await blocking(jobwait.job_answer, job_id, actor)


def _on_postgresql() -> bool:
    return connection.vendor == "postgresql"


def queue_wakes(queue: str, mark: Mark | None = None) -> AbstractAsyncContextManager[Wake]:
    """``async with queue_wakes(name, mark) as wake``: woken when ``queue`` may have
    work; ``wake.covered`` if ``mark`` (taken before the caller's last claim) shows
    that nothing was dispatched for the queue since."""
    return _wakes(queue, by_job=False, slice_seconds=None, mark=mark)


def job_wakes(job_id: str) -> AbstractAsyncContextManager[Wake]:
    """``async with job_wakes(id) as wake``: woken when the (watched) job may have
    finished, and at least every ``SLICE_SECONDS``."""
    return _wakes(job_id, by_job=True, slice_seconds=SLICE_SECONDS, mark=None)


def queue_mark(queue: str) -> Mark | None:
    """The queue's mark in this process, to take just before a claim that a
    ``queue_wakes`` may follow (None on SQLite, or when it cannot cover)."""
    return notifier().mark(queue) if _on_postgresql() else None


def queue_saw_nothing(queue: str, mark: Mark | None) -> None:
    """A claim that began at ``mark`` found nothing to hand out (``known_empty``)."""
    if mark is not None:
        notifier().saw_nothing(queue, mark)


def queue_known_empty(queue: str, mark: Mark | None) -> bool:
    """Whether a claim is sure to find nothing in ``queue`` now: one found nothing at
    ``mark``, the current mark (``Notifier.known_empty``)."""
    return mark is not None and notifier().known_empty(queue, mark)


@asynccontextmanager
async def _wakes(
    key: str, *, by_job: bool, slice_seconds: float | None, mark: Mark | None
) -> AsyncIterator[Wake]:
    """Registered for the block, left however it ends: a request cancelled (its client
    gone) while joining still leaves once the join is done, so no lock is left behind.
    Joining and leaving take a thread only when they must talk to the database."""
    wake = Wake(postgresql=_on_postgresql(), slice_seconds=slice_seconds)
    if not wake.postgresql:
        yield wake
        return
    listener = notifier()
    loop = asyncio.get_running_loop()
    joining: asyncio.Future[None] | None = None
    if not (
        listener.try_join_job(key, wake) if by_job else listener.try_join_queue(key, wake, mark)
    ):
        joining = loop.run_in_executor(
            None, listener.join_job if by_job else listener.join_queue, key, wake
        )
    try:
        if joining is not None:
            await asyncio.shield(joining)
        yield wake
    finally:
        if joining is not None and not joining.done():
            await asyncio.wait([joining])
        if joining is None or (not joining.cancelled() and joining.exception() is None):
            if by_job:
                listener.leave_job(key, wake)
            elif not listener.try_leave_queue(key, wake):
                await asyncio.shield(loop.run_in_executor(None, listener.leave_queue, key, wake))
