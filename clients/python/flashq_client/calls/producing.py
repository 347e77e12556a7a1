"""Pushing jobs, one, a batch or a flow, and waiting for them to finish."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal, cast, overload

from .._policy import Call, Gather, Pause, Plan, retry_after
from ..fields import seal_flow, seal_jobs
from ..shapes import Backoff, FlowNode, Job, JobId, PushedJob, WaitedJob
from .base import LONG_POLL_MARGIN_SECONDS, CallsBase, fetch, queue_segment, segment

#: The longest wait the server takes in one call (``GET /jobs/{id}/wait``); ``wait``
#: asks again for longer ones.
MAX_JOB_WAIT_MS = 30_000


def api_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """A push body in the API's field names (``delay_ms`` and ``ttl_ms`` are taken for
    ``delay`` and ``ttl``), ``depends_on`` ids as text."""
    item = dict(job)
    for ours, theirs in (("delay_ms", "delay"), ("ttl_ms", "ttl")):
        if ours in item:
            if theirs in item:
                raise ValueError(f"a job gives both {ours} and {theirs}")
            item[theirs] = item.pop(ours)
    if item.get("depends_on") is not None:
        item["depends_on"] = [str(job_id) for job_id in item["depends_on"]]
    return item


def keyed(job: Mapping[str, Any]) -> dict[str, Any]:
    """A push body (``api_job``) with an idempotency key: its own, or a new uuid4."""
    item = api_job(job)
    if item.get("key") is None:
        item["key"] = uuid.uuid4().hex
    return item


def _flow_child(child: Mapping[str, Any]) -> dict[str, Any]:
    """One child of a flow, its job and its own children in the API's field names."""
    node = dict(child)
    if "job" in node:
        node["job"] = api_job(node["job"])
    if node.get("children") is not None:
        node["children"] = [_flow_child(grandchild) for grandchild in node["children"]]
    return node


def _ms_until(deadline: float) -> int:
    """Whole milliseconds from now to a ``time.monotonic()`` deadline, at least 0."""
    return max(0, math.ceil((deadline - time.monotonic()) * 1000))


class ProducingCalls(CallsBase):
    @overload
    def push(
        self,
        queue: str,
        data: Mapping[str, Any],
        *,
        priority: int | None = None,
        delay_ms: int | None = None,
        max_attempts: int | None = None,
        backoff: Backoff | Mapping[str, Any] | None = None,
        ttl_ms: int | None = None,
        key: str | None = None,
        subject: str | None = None,
        tags: Sequence[str] | None = None,
        timeout_ms: int | None = None,
        group: str | None = None,
        depends_on: Sequence[JobId] | None = None,
        wait: Literal[False] = False,
        wait_timeout_ms: int | None = None,
    ) -> Plan[PushedJob]: ...

    @overload
    def push(
        self,
        queue: str,
        data: Mapping[str, Any],
        *,
        priority: int | None = None,
        delay_ms: int | None = None,
        max_attempts: int | None = None,
        backoff: Backoff | Mapping[str, Any] | None = None,
        ttl_ms: int | None = None,
        key: str | None = None,
        subject: str | None = None,
        tags: Sequence[str] | None = None,
        timeout_ms: int | None = None,
        group: str | None = None,
        depends_on: Sequence[JobId] | None = None,
        wait: Literal[True],
        wait_timeout_ms: int | None = None,
    ) -> Plan[WaitedJob]: ...

    def push(
        self,
        queue: str,
        data: Mapping[str, Any],
        *,
        priority: int | None = None,
        delay_ms: int | None = None,
        max_attempts: int | None = None,
        backoff: Backoff | Mapping[str, Any] | None = None,
        ttl_ms: int | None = None,
        key: str | None = None,
        subject: str | None = None,
        tags: Sequence[str] | None = None,
        timeout_ms: int | None = None,
        group: str | None = None,
        depends_on: Sequence[JobId] | None = None,
        wait: bool = False,
        wait_timeout_ms: int | None = None,
    ) -> Plan[PushedJob | WaitedJob]:
        """Push one job to ``queue``.

        Without ``key`` the client makes one (a uuid4), so a retry finds the job its
        first attempt made while that job is unfinished (the server matches keys against
        unfinished jobs only: one that finished before the retry landed is not found,
        and the retry makes a second).

        In producer mode (``Client(..., producer=True)``) the push is sent with the
        other pushes to ``queue`` made within ``linger_ms`` (up to ``max_batch``) as one
        batch request; it still returns only once that batch is committed, with its own
        job, or raises its own error (one refused job does not fail the others).
        ``Client.submit`` is the same push returning a future at once.

        Args:
            queue: the queue's name (made on first push).
            data: the job's payload, a JSON object.
            priority: higher runs first (default 0).
            delay_ms: run no sooner than this many milliseconds from now.
            max_attempts: attempts before the job fails for good (default 3).
            backoff: ``{"type": "fixed"|"exponential", "delay": ms}`` between attempts.
            ttl_ms: the job expires if not started within this many milliseconds.
            key: an idempotency key; an unfinished job with it is returned instead.
            subject: the data subject the job is about (for GDPR erasure).
            tags: labels to find the job by.
            timeout_ms: the processing deadline from each claim (past it the attempt
                fails with code ``timeout``).
            group: at most the queue's group concurrency of the group's jobs run at once.
            depends_on: up to 100 ids of jobs (the token needs ``getJob`` on their
                queues) that must complete before this one runs.
            wait: then wait for the job to finish, as ``wait`` does.
            wait_timeout_ms: with ``wait``, how long (None: until it finishes).

        Returns:
            The job (``PushedJob``) with ``created``: false when the server answered with
            an existing job, the first attempt's included. With ``wait``, the job as
            ``wait`` returns it (``WaitedJob``), with ``created`` too.

        Raises:
            InvalidInput: the job is refused (schema, size, a card number, a bad
                option); ``errors`` names the fields.
            Forbidden: the token may not push to the queue.
            Conflict: ``key_conflict``: another token family's unfinished job has the key.
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            yes: the idempotency key finds the job the first attempt made while it is
            unfinished (one that finished before the retry landed is not found, and the
            retry makes a second)."""
        data = self.seal(queue, data)
        body: dict[str, Any] = {"data": dict(data), "key": key or uuid.uuid4().hex}
        options: dict[str, Any] = {
            "priority": priority,
            "delay": delay_ms,
            "max_attempts": max_attempts,
            "backoff": None if backoff is None else dict(backoff),
            "ttl": ttl_ms,
            "subject": subject,
            "tags": None if tags is None else list(tags),
            "timeout": timeout_ms,
            "group": group,
            "depends_on": None if depends_on is None else [str(each) for each in depends_on],
        }
        body.update({name: value for name, value in options.items() if value is not None})
        path = f"queues/{queue_segment(queue)}/jobs"
        if self.settings.producer:
            # Sent with other pushes to the queue (``_gather``): its own answer or error.
            job = cast(PushedJob, (yield Gather(path, body)))
        else:
            response = yield Call(method="POST", path=path, body=body, idempotent=True)
            job = cast(PushedJob, response.json())
            job["created"] = response.status_code == 201
        if not wait:
            return job
        waited = yield from self.wait(job["id"], timeout_ms=wait_timeout_ms)
        waited["created"] = job["created"]
        return waited

    def push_batch(self, queue: str, jobs: Sequence[Mapping[str, Any]]) -> Plan[list[PushedJob]]:
        """Push up to 1000 jobs to ``queue``, all or nothing.

        Args:
            queue: the queue's name.
            jobs: push bodies in the API's field names (``data``, ``priority``,
                ``delay``, ``max_attempts``, ``backoff``, ``ttl``, ``key``, ``subject``,
                ``tags``, ``timeout``, ``group``, ``depends_on``); one without a ``key``
                gets its own.

        Returns:
            The jobs in input order, each with ``created``.

        Raises:
            InvalidInput: a job is refused; ``errors`` paths name it (``/jobs/3/data``).
            Forbidden: the token may not push to the queue.
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            yes: each job's idempotency key finds what the first attempt made while it
            is unfinished (as ``push`` says)."""
        if not jobs:
            return []
        jobs = seal_jobs(jobs, queue, self.settings.encrypt_fields, self.settings.field_keys)
        body = {"jobs": [keyed(job) for job in jobs]}
        path = f"queues/{queue_segment(queue)}/jobs/batch"
        answer = yield from fetch("POST", path, body=body, idempotent=True)
        return cast(list[PushedJob], answer["jobs"])

    def push_flow(
        self,
        queue: str,
        job: Mapping[str, Any],
        children: Sequence[Mapping[str, Any]],
        *,
        on_child_failure: Literal["fail", "ignore", "continue"] = "fail",
    ) -> Plan[FlowNode]:
        """Push a flow in one transaction: a parent job that runs once its children
        have finished.

        Up to 10 levels and 1,000 jobs. Only the root may have a ``key``: without one
        the client makes one.

        Args:
            queue: the parent's queue.
            job: the parent, a push body in the API's names (as ``push_batch`` takes).
            children: ``{"queue", "job", "children"?, "on_child_failure"?}`` each, in
                its own queue.
            on_child_failure: what a parent does when a child fails for good: ``fail``
                (it fails with code ``child_failed`` and its unfinished children are
                cancelled), ``ignore`` or ``continue`` (it runs when the rest have
                finished); a node may set its own.

        Returns:
            The tree of ids, queues and states, ``created`` on the root (false: an
            unfinished root of this token's family had the key).

        Raises:
            InvalidInput: one bad job refuses the flow; ``errors`` gives its path
                (``/children/2/job/data``).
            Forbidden: the token lacks ``push`` on a queue of the tree (nothing written).
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            yes: the root's key returns the first attempt's tree while the root is
            unfinished (as ``push`` says)."""
        job, children = seal_flow(
            queue, job, children, self.settings.encrypt_fields, self.settings.field_keys
        )
        root = keyed(job)
        body = {
            "job": root,
            "children": [_flow_child(child) for child in children],
            "on_child_failure": on_child_failure,
        }
        path = f"queues/{queue_segment(queue)}/flows"
        response = yield Call(method="POST", path=path, body=body, idempotent=True)
        tree = cast(FlowNode, response.json())
        tree["created"] = response.status_code == 201
        return tree

    def children(self, job_id: JobId) -> Plan[list[Job]]:
        """A flow job's children, in the order pushed, each as ``get_job`` shows it.

        Only those in queues where the token has ``getJob``; a job outside a flow has
        none.

        Args:
            job_id: the parent job.

        Returns:
            The children (state, ``result``, ``error_code`` and the rest).

        Raises:
            NotFound: no such job, or one the token may not see.
            Forbidden: the token lacks ``getJob`` on the job's queue.
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            yes, safe: a read."""
        answer = yield from fetch("GET", f"jobs/{segment(job_id)}/children", idempotent=True)
        return cast(list[Job], answer["children"])

    def wait(self, job_id: JobId, *, timeout_ms: int | None = None) -> Plan[WaitedJob]:
        """Wait for a job to finish (completed, failed, cancelled or expired).

        The server waits at most 30 s per call, so a longer wait asks again; a server
        that holds too many waits answers at once with ``Retry-After``, and the client
        pauses that long (at most what is left) before asking again.

        Args:
            job_id: the job.
            timeout_ms: how long to wait (None: until it finishes; 0 asks once).

        Returns:
            The job as ``get_job`` shows it, with ``finished``: True, or False and its
            current state when ``timeout_ms`` ran out first.

        Raises:
            ValueError: ``timeout_ms`` is negative.
            NotFound: no such job, or a queue the token cannot see.
            Forbidden: the token lacks ``getJob`` on the job's queue.
            FlashqError: any other error answer, or no answer after the retries.

        Retried:
            yes, safe: a read."""
        if timeout_ms is not None and timeout_ms < 0:
            raise ValueError("timeout_ms cannot be negative")
        deadline = None if timeout_ms is None else time.monotonic() + timeout_ms / 1000
        while True:
            left = MAX_JOB_WAIT_MS if deadline is None else _ms_until(deadline)
            chunk = min(left, MAX_JOB_WAIT_MS)
            response = yield Call(
                method="GET",
                path=f"jobs/{segment(job_id)}/wait",
                params={"timeout_ms": chunk},
                idempotent=True,
                read_timeout=chunk / 1000 + LONG_POLL_MARGIN_SECONDS,
            )
            job = cast(WaitedJob, response.json())
            if job["finished"] or (deadline is not None and _ms_until(deadline) <= 0):
                return job
            pause = retry_after(response)
            if pause:
                if deadline is not None:
                    pause = min(pause, _ms_until(deadline) / 1000)
                yield Pause(pause, f"ask again whether job {job_id} has finished")
