"""The queue rows push and pull read on every call, remembered by each process for
QUEUE_CACHE_SECONDS (1 s by default; 0 reads them on every call), as
security.authentication remembers principals.

Every push and every pull round needs its queue's settings (schema, size cap, card
allow-list, paused, limits, grouped): one SELECT by name, a sixth of an in-process push.
A row read here is remembered, by name and field set, for QUEUE_CACHE_SECONDS from the
moment its read began, so a change made elsewhere (another app server, SQL) reaches
this process within that time. A change made in this process (a Queue saved or deleted:
the settings API, the admin, pause and resume; the grouped flip, forget_on_commit)
forgets every remembered row when it commits, and a generation count keeps a lookup that
raced with it from putting the old row back. Until it commits, the transaction that made
the change reads its queues from the database: it sees its own change, and no other
thread sees it before it commits (nor ever, if it rolls back).

A queue that does not exist is never remembered: its first push creates it as before.
(Creating one forgets nothing, so a transaction that creates a queue and then reads it
here may have it remembered before it commits; should it roll back, that row names a
deleted queue, as below.)
A remembered queue deleted (or recreated) elsewhere meanwhile: a push into it breaks the
jobs' foreign key and is tried again with a fresh lookup (queues.services.push), a pull
finds no jobs of it. A pull that read a queue as never grouped leaves grouped jobs alone
(queues.claim), so a stale ``grouped`` only delays them.

Each caller gets a Queue of its own (a push may set ``grouped`` on it); the JSON values
in it (json_schema, card_allowlist) are shared between callers and only read."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from . import selectors
from .models import Queue

_MAX_ROWS = 10_000
_clock = time.monotonic  # tests replace it


@dataclass(frozen=True, slots=True)
class _Row:
    attnames: list[str]
    values: list[Any]
    until: float  # _clock() deadline


_rows: dict[tuple[str, frozenset[str]], _Row] = {}
_generation = [0]


def forget_queues() -> None:
    """Drop every remembered queue row."""
    _generation[0] += 1
    _rows.clear()


def gone(queue: Queue) -> bool:
    """Whether ``queue`` no longer exists (an insert into it broke the jobs' foreign key:
    deleted since this process remembered it); then every remembered row is forgotten."""
    if Queue.objects.filter(pk=queue.pk).exists():
        return False
    forget_queues()
    return True


def _forget_committed() -> None:
    forget_queues()


def forget_on_commit() -> None:
    """A queue row changed in the current transaction: every remembered row is forgotten
    when it commits (at once outside a transaction), and until then this transaction
    reads its queues from the database."""
    transaction.on_commit(_forget_committed)


def _changed_here() -> bool:
    """Whether the open transaction changed a queue row: its forget_on_commit callback
    is pending (a rollback, of a savepoint too, drops it with the change). Django keeps
    them as (savepoint ids, callback, robust) in ``connection.run_on_commit``."""
    return connection.in_atomic_block and any(
        entry[1] is _forget_committed for entry in connection.run_on_commit
    )


def queue_named(name: str, fields: frozenset[str]) -> Queue | None:
    """The queue named ``name`` with ``fields`` loaded (as selectors.queue_by_name), at
    most QUEUE_CACHE_SECONDS old; None when there is none (never remembered)."""
    seconds = settings.QUEUE_CACHE_SECONDS
    if seconds <= 0 or _changed_here():
        return selectors.queue_by_name(name, fields)
    key = (name, fields)
    row = _rows.get(key)
    if row is None or _clock() >= row.until:
        generation, began = _generation[0], _clock()
        found = selectors.queue_row(name, fields)
        if found is None:
            return None
        row = _Row(*found, until=began + seconds)
        if generation == _generation[0]:  # else a change committed while this read ran
            if len(_rows) >= _MAX_ROWS:
                _rows.clear()
            _rows[key] = row
            if generation != _generation[0]:  # ... or between the test and the store
                _rows.pop(key, None)
    return Queue.from_db(connection.alias, row.attnames, row.values)
