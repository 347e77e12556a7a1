"""How many pulls may long-poll at once in this process, in all and per token family.

A waiting pull holds one of gunicorn's threads (and its database connection) for up to
``MAX_WAIT_SECONDS``. Without a cap, one tenant's workers opening more long polls than
the process has threads would leave none for anybody's push, ack or ``/readyz``. The
counts are per process because the threads are: a cap shared across app servers would
cost a database round trip per waiting pull and still not say which process's threads
are taken. A family may therefore hold up to ``LONG_POLL_MAX_WAITERS_PER_FAMILY`` waiters
in every worker process of every app server; the point is that it never holds them all.

A pull that claims work at once never takes a slot: the cost (one lock, two counter
updates) is paid only by pulls about to wait."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings


class WaitSlots:
    """Waiting pulls of this process: their number, and their number per owner."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = 0
        self._by_owner: dict[str, int] = {}

    def take(self, owner: str, *, total_cap: int, owner_cap: int) -> bool:
        """One slot for ``owner``, or False when this process or ``owner`` is at its cap."""
        with self._lock:
            held = self._by_owner.get(owner, 0)
            if self._total >= total_cap or held >= owner_cap:
                return False
            self._total += 1
            self._by_owner[owner] = held + 1
            return True

    def give_back(self, owner: str) -> None:
        with self._lock:
            self._total -= 1
            held = self._by_owner[owner] - 1
            if held:
                self._by_owner[owner] = held
            else:
                del self._by_owner[owner]

    def held(self, owner: str | None = None) -> int:
        """Slots taken, by everyone or by ``owner``."""
        with self._lock:
            return self._total if owner is None else self._by_owner.get(owner, 0)


SLOTS = WaitSlots()


@contextmanager
def wait_slot(owner: str) -> Iterator[bool]:
    """``with wait_slot(owner) as waiting: ...``: whether this pull may wait. A slot
    taken is given back however the block ends: work found, the wait over, an error,
    the database gone. (A client that hangs up mid-wait is not noticed under WSGI until
    the answer is written, so its slot is held for at most its ``wait``.)"""
    taken = SLOTS.take(
        owner,
        total_cap=settings.LONG_POLL_MAX_WAITERS,
        owner_cap=settings.LONG_POLL_MAX_WAITERS_PER_FAMILY,
    )
    try:
        yield taken
    finally:
        if taken:
            SLOTS.give_back(owner)
