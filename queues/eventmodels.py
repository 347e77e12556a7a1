"""The job event log: one row per change of a job that a subscriber may want to hear
about (``queues.events``). Rows are written by database triggers on ``queues_job``
(migration 0021), in the same transaction as the change itself, so an event exists
exactly when its change committed, whichever code path made it.

The log is not a second audit trail: it holds no payloads, results, error texts or
actors, only what a live dashboard shows, and it is pruned to a short window
(``EVENT_LOG_SECONDS``, ``EVENT_LOG_MAX_ROWS``)."""

from __future__ import annotations

from django.db import models


class EventKind(models.TextChoices):
    PUSHED = "pushed"
    #: A job held back by the jobs it waits for (flows, depends_on) became ready.
    WAITING = "waiting"
    ACTIVE = "active"
    PROGRESS = "progress"
    COMPLETED = "completed"
    FAILED = "failed"
    #: Back to waiting after an attempt: a failure with attempts left, a lost lease, a
    #: release or snooze, or an operator's retry of a finished job (a flow parent's
    #: retry sends it back to waiting-children: migration 0023).
    RETRIED = "retried"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REMOVED = "removed"
    #: Not in the log: sent to a subscriber whose Last-Event-ID the log no longer covers.
    RESET = "reset"


class JobEvent(models.Model):
    """One change of one job. Ordered by ``(txid, id)``: ``txid`` is the writing
    transaction's id on PostgreSQL (0 on SQLite, whose writers take turns), so a reader
    that only reads transactions older than every running one (``queues.events.log``)
    never skips a row that commits later."""

    id = models.BigAutoField(primary_key=True)
    txid = models.BigIntegerField(default=0)
    at = models.DateTimeField()
    kind = models.CharField(max_length=16, choices=EventKind.choices)
    job_id = models.UUIDField()
    # No foreign keys: the log must never hold up deleting a job or a queue.
    queue_id = models.IntegerField()
    state = models.CharField(max_length=16)
    attempts = models.IntegerField()
    progress = models.SmallIntegerField()
    error_code = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        indexes = [
            models.Index(fields=["txid", "id"], name="jobevent_order_idx"),
            models.Index(fields=["at"], name="jobevent_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.job_id}"


class EventLogMark(models.Model):
    """One row: the newest event pruned so far, ``(txid, id)``. A subscriber resuming
    from an event at or below it may have missed some, and is sent ``reset``."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    txid = models.BigIntegerField(default=0)
    event_id = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"pruned through ({self.txid}, {self.event_id})"
