"""The per-minute rollup behind the admin's charts and history counts: per queue and
minute, how many jobs were pushed, completed, failed (for good) and retried, and a
histogram of completed jobs' run times. Rows are written by database triggers on
``queues_job`` (migration 0025) in the same transaction as the change, whichever code
path made it, so a count exists exactly when its change committed; nothing reads the
jobs table to draw a chart.

Counts are history: a retry later, retention or a GDPR erasure deleting the jobs never
lowers them (the rollup holds counts only, no job id, payload or subject, so neither
touches it). The scheduler folds each minute's stripes into one row and drops minutes
older than ``FLASHQ_STATS_DAYS`` (queues.rollup).

``stripe``: on PostgreSQL the writing backend's process id, so two running transactions
never share a row (no lock waits between concurrent pushes, and no deadlock between
transactions that touch several queues); 0 on SQLite, whose writers take turns, and for
folded rows."""

from __future__ import annotations

from django.db import models

#: Run-time histogram buckets (ms): bucket 0 holds runs under 1 ms, bucket k (1..22)
#: runs in [2**(k-1), 2**k) ms, the last one runs of 2**22 ms (~70 min) and more.
#: Migration 0025's triggers use the same bounds.
BUCKET_LOWER_MS: tuple[int, ...] = (0, *(2**k for k in range(23)))
BUCKETS = len(BUCKET_LOWER_MS)  # 24
HISTOGRAM = tuple(f"h{k:02}" for k in range(BUCKETS))
COUNTS = ("pushed", "completed", "failed", "retried")


class JobMinute(models.Model):
    """One queue's changes in one minute (one writer's share, until folded)."""

    pk = models.CompositePrimaryKey("queue_id", "minute", "stripe")
    # No foreign key: the rollup must never hold up anything done to a queue.
    queue_id = models.IntegerField()
    minute = models.DateTimeField()
    stripe = models.IntegerField(default=0)
    pushed = models.PositiveIntegerField(default=0)
    completed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    retried = models.PositiveIntegerField(default=0)
    # Completed jobs' run time (started_at to finished_at), summed, and by bucket.
    run_ms = models.BigIntegerField(default=0)
    h00 = models.PositiveIntegerField(default=0)
    h01 = models.PositiveIntegerField(default=0)
    h02 = models.PositiveIntegerField(default=0)
    h03 = models.PositiveIntegerField(default=0)
    h04 = models.PositiveIntegerField(default=0)
    h05 = models.PositiveIntegerField(default=0)
    h06 = models.PositiveIntegerField(default=0)
    h07 = models.PositiveIntegerField(default=0)
    h08 = models.PositiveIntegerField(default=0)
    h09 = models.PositiveIntegerField(default=0)
    h10 = models.PositiveIntegerField(default=0)
    h11 = models.PositiveIntegerField(default=0)
    h12 = models.PositiveIntegerField(default=0)
    h13 = models.PositiveIntegerField(default=0)
    h14 = models.PositiveIntegerField(default=0)
    h15 = models.PositiveIntegerField(default=0)
    h16 = models.PositiveIntegerField(default=0)
    h17 = models.PositiveIntegerField(default=0)
    h18 = models.PositiveIntegerField(default=0)
    h19 = models.PositiveIntegerField(default=0)
    h20 = models.PositiveIntegerField(default=0)
    h21 = models.PositiveIntegerField(default=0)
    h22 = models.PositiveIntegerField(default=0)
    h23 = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [
            # The charts of every visible queue, the fold and the prune: by minute.
            models.Index(fields=["minute"], name="jobminute_minute_idx"),
        ]

    def __str__(self) -> str:
        return f"queue {self.queue_id} at {self.minute:%Y-%m-%d %H:%M} ({self.stripe})"
