"""Verb x queue access decisions. Plain values in, decisions out: no jobs, no HTTP.

Rules: patterns are anchored and case-sensitive, ``*`` matches any run of characters
(including none) and nothing else is special. Default deny; a matching deny beats any
allow. The ``*`` verb grants every verb except ``reveal``, ``admin``, ``erase`` and
``metrics``, which are only granted by name; in a deny rule ``*`` denies everything,
named verbs included.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from kernel.limits import INTERNAL_QUEUE_PREFIX, PATTERN_RE
from kernel.ratelimit import Rate


class Verb(StrEnum):
    """What a token may do on a queue. Every check names a member, so a misspelt verb
    fails at import or in mypy instead of silently denying."""

    PUSH = "push"
    PULL = "pull"
    ACK = "ack"
    FAIL = "fail"
    PROGRESS = "progress"
    GET_JOB = "getJob"
    GET_JOBS = "getJobs"
    CANCEL = "cancel"
    UPDATE = "update"
    RETRY = "retry"
    CLEAN = "clean"
    #: Create, change, delete, pause, resume and trigger a queue's repeatable jobs.
    SCHEDULE = "schedule"
    REVEAL = "reveal"
    ADMIN = "admin"
    #: GDPR erasure (and its dry run) of a data subject's jobs in the queue: it reads
    #: and destroys what other verbs only hand over, so it is never implied.
    ERASE = "erase"
    #: Read GET /metrics (granted on ``*``); no queue's data, but only by name.
    METRICS = "metrics"


VERBS: tuple[str, ...] = tuple(Verb)
NAMED_ONLY = frozenset({Verb.REVEAL, Verb.ADMIN, Verb.ERASE, Verb.METRICS})
WILDCARD = "*"


class InvalidRule(ValueError):
    pass


def pattern_matches(pattern: str, queue: str) -> bool:
    """Glob match where ``*`` is any run of characters, by the two-pointer method: at
    most len(pattern) * len(queue) steps, never a regex's exponential backtracking on a
    pattern like ``*a*a*a*a*b``. The engine's internal queues (``_flashq.``, webhook
    deliveries) are matched by no pattern at all, ``*`` and ``_flashq.*`` included: no
    token reaches them, whatever its rules."""
    if queue.startswith(INTERNAL_QUEUE_PREFIX):
        return False
    p = q = 0
    star = -1  # position in pattern after the last star seen
    resume = 0  # position in queue that star is currently absorbing up to
    while q < len(queue):
        if p < len(pattern) and pattern[p] == WILDCARD:
            star, resume = p + 1, q
            p += 1
        elif p < len(pattern) and pattern[p] == queue[q]:
            p += 1
            q += 1
        elif star != -1:
            resume += 1
            p, q = star, resume
        else:
            return False
    return all(char == WILDCARD for char in pattern[p:])


def expand_verbs(verbs: Iterable[str], *, allow: bool) -> frozenset[str]:
    """The concrete verbs a rule covers. Raises InvalidRule for unknown verbs."""
    given = frozenset(verbs)
    unknown = given - set(VERBS) - {WILDCARD}
    if unknown:
        raise InvalidRule(
            f"unknown verb(s): {', '.join(sorted(unknown))}; "
            f"use {WILDCARD} or any of {', '.join(VERBS)}"
        )
    if not given:
        raise InvalidRule("a rule needs at least one verb")
    if WILDCARD not in given:
        return given
    everything = frozenset(VERBS)
    return everything if not allow else (everything - NAMED_ONLY) | (given & NAMED_ONLY)


def split_verbs(text: str) -> tuple[str, ...]:
    """A stored or typed verb list (``push, pull``) as its verbs, blanks dropped."""
    return tuple(verb.strip() for verb in text.split(",") if verb.strip())


def validate_pattern(pattern: str) -> str:
    if not PATTERN_RE.fullmatch(pattern):
        raise InvalidRule(
            "a queue pattern is 1 to 128 characters of letters, digits, _ . : - and *"
        )
    return pattern


@dataclass(frozen=True)
class Rule:
    pattern: str
    verbs: frozenset[str]
    allow: bool

    @classmethod
    def build(cls, pattern: str, verbs: Iterable[str], *, allow: bool) -> Rule:
        return cls(validate_pattern(pattern), expand_verbs(verbs, allow=allow), allow)

    def covers(self, verb: str, queue: str) -> bool:
        return verb in self.verbs and pattern_matches(self.pattern, queue)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str


@dataclass(frozen=True)
class Principal:
    """Who is calling: an API token (``token_id``) or a bootstrap token (no id)."""

    name: str
    rules: tuple[Rule, ...]
    token_id: int | None = None
    #: The token's own allow-list (CIDRs); empty: any address the global list allows.
    networks: tuple[str, ...] = ()
    #: Tokens rotated from one another share a family.
    family: str = ""
    #: Requests per period for this token, or None (kernel.ratelimit).
    rate: Rate | None = None
    #: The token's public id (empty for a bootstrap token).
    public_id: str = ""
    #: Its last use is older than the resolution: record this one once it is let in.
    last_use_due: bool = False
    is_authenticated: bool = field(default=True, init=False)

    @property
    def key(self) -> str:
        """Who holds a lease or an idempotency key: the token's family, so a rotated
        token carries on with what its predecessor started."""
        if self.token_id is None:
            return f"bootstrap:{self.name}"
        return f"family:{self.family}" if self.family else f"token:{self.token_id}"

    def decide(self, verb: Verb, queue: str) -> Decision:
        allowing = None
        for rule in self.rules:
            if rule.covers(verb, queue):
                if not rule.allow:
                    return Decision(False, f"by rule: deny {rule.pattern} ({verb})")
                allowing = allowing or rule
        if allowing is None:
            return Decision(False, "no rule: default deny")
        return Decision(True, f"by rule: allow {allowing.pattern} ({verb})")

    def allows(self, verb: Verb, queue: str) -> bool:
        return self.decide(verb, queue).allowed

    def sees(self, queue: str) -> bool:
        """A queue is visible to a token that may use at least one verb on it (``metrics``
        is not about any queue: a scraper's ``*=metrics`` sees none)."""
        return any(self.allows(verb, queue) for verb in Verb if verb is not Verb.METRICS)
