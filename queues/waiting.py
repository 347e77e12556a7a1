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
from typing import Any

from django.conf import settings

from compliance.audit import Actor
from kernel.blocking import blocking
from kernel.counters import LONG_POLLS_OVER_CAP

from . import jobwait
from .notifier import job_wakes, queue_wakes
from .pulling import Pulled, PullSpec
from .waitslots import wait_slot


async def pull_wait(spec: PullSpec, *, deadline: float) -> Pulled:
    """After a first round that found nothing (``PullSpec.begin``): wait until work
    comes or the monotonic ``deadline`` passes, claiming again on every wake-up."""
    with wait_slot(spec.owner) as may_wait:
        if not may_wait:
            # Work may have come meanwhile: one more round, then an answer at once.
            LONG_POLLS_OVER_CAP.inc()
            claimed = await blocking(spec.claim, last=True)
            pulled = Pulled(claimed or [])
            if not pulled:
                pulled.retry_after_s = settings.LONG_POLL_RETRY_AFTER_SECONDS
            return pulled
        recorded = False
        round_: asyncio.Future[list[Any] | None] | None = None
        try:
            async with queue_wakes(spec.queue_name) as wake:
                while True:
                    last = deadline - time.monotonic() <= 0
                    round_ = asyncio.ensure_future(blocking(spec.claim, last=last))
                    jobs = await asyncio.shield(round_)
                    if jobs is not None:
                        recorded = True
                        return Pulled(jobs)
                    await wake.wait(deadline - time.monotonic())
        except asyncio.CancelledError:
            if not recorded and not await _recorded(round_):
                await blocking(spec.abandon)
            raise


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
