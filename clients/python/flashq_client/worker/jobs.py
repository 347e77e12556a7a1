"""What a handler receives: the leased job, ``report()``, and ``children()``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ..client import Client, Job, LeasedJob

#: Takes a handler's report: (progress, message).
Reporter = Callable[[int, str], None]


class _ChildrenSource(Protocol):
    def children(self, job_id: str) -> Awaitable[list[Job]]: ...


class _HeldJob(dict[str, Any]):
    def __init__(self, job: LeasedJob, reporter: Reporter | None) -> None:
        super().__init__(job)
        self._reporter = reporter

    def report(self, progress: int, message: str = "") -> None:
        """Report the job's progress; it is sent at once, and every heartbeat after it
        sends it again (a heartbeat never resets it).

        Never blocks and never raises for the network: the worker's heartbeat sends it
        (reports made faster than they go out are coalesced: the last one is sent). A
        message the server refuses (a card number in it) is logged and dropped, the
        progress kept.

        Args:
            progress: The percentage done, an int from 0 to 100.
            message: A short text (at most 1000 characters kept), shown only to tokens
                with ``reveal`` on the queue.

        Raises:
            ValueError: progress is out of 0 to 100.
            TypeError: progress is not an int or message not a str.
            RuntimeError: the job was not handed over by a worker.

        Retried: yes, safe: it is sent as ``progress``, which sets absolute values.
        """
        if self._reporter is None:
            raise RuntimeError("report() works on the jobs a worker hands its handler")
        self._reporter(progress, message)


class WorkerJob(_HeldJob):
    """What a thread ``Worker``'s handler receives: the leased job as ``pull`` returns
    it (``job["data"]``, ``job["attempts"]``...), ``report()`` and ``children()``.

    Args:
        job: the leased job (its sealed fields already opened by the worker).
        client: the worker's client, which ``children()`` asks.
        reporter: what ``report()`` hands progress to (the worker's heartbeat); None
            outside a worker, where ``report()`` raises ``RuntimeError``.
    """

    def __init__(self, job: LeasedJob, client: Client, reporter: Reporter | None = None) -> None:
        super().__init__(job, reporter)
        self._client = client

    def children(self) -> list[Job]:
        """This job's children in its flow, as ``get_job`` shows them.

        Asked with the worker's token: it needs ``getJob`` on this job's queue and on the
        children's queues (children elsewhere are left out). A parent under
        ``on_child_failure="continue"`` finds its failed children here.

        Returns:
            The children in the order pushed, each with its state, ``result`` and
            ``error_code``.

        Raises:
            Forbidden: the token lacks ``getJob`` on this job's queue.
            ConnectionFailed: no answer, after the client's retries.

        Retried: yes, safe: a read.
        """
        return self._client.children(self["id"])


class AsyncWorkerJob(_HeldJob):
    """What an ``AsyncWorker``'s handler receives: as ``WorkerJob``, with
    ``await job.children()``.

    Args:
        job: the leased job (its sealed fields already opened by the worker).
        client: the worker's async client, which ``children()`` asks.
        reporter: what ``report()`` hands progress to (the worker's heartbeat task);
            None outside a worker, where ``report()`` raises ``RuntimeError``.
    """

    def __init__(
        self, job: LeasedJob, client: _ChildrenSource, reporter: Reporter | None = None
    ) -> None:
        super().__init__(job, reporter)
        self._client = client

    async def children(self) -> list[Job]:
        """This job's children in its flow, as ``WorkerJob.children`` lists them,
        awaited.

        Returns:
            What ``WorkerJob.children`` returns.

        Raises:
            FlashqError: what ``WorkerJob.children`` raises.

        Retried: yes, safe: a read.
        """
        return await self._client.children(self["id"])
