"""Validation of job options as plain code: the batch path checks up to 1000 of these
per request, where a DRF serializer per item would dominate the cost. Errors are
collected with JSON Pointer paths so a client sees every problem at once."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from kernel import limits
from kernel.limits import DEFAULT_BACKOFF
from kernel.problems import FieldError, InvalidInput, PayloadTooLarge, pointer_segment
from security.cards import CardFinding, find_cards, find_cards_in_text
from security.encryption import dump
from security.payloads import shape_problems

FIELDS = frozenset(
    {
        "data",
        "priority",
        "delay",
        "max_attempts",
        "backoff",
        "ttl",
        "timeout",
        "key",
        "subject",
        "tags",
        "group",
        "depends_on",
    }
)
# Ticks' job keys (queues.schedulespec.tick_key) start with it; a push may not, or a
# client could take a tick's key and the tick would make no job of its own.
SCHEDULE_KEY_PREFIX = "schedule:"
BACKOFF_FIELDS = frozenset({"type", "delay", "max", "jitter"})


@dataclass(frozen=True, slots=True)
class JobSpec:
    data: dict[str, Any]
    priority: int = 0
    delay_ms: int = 0
    max_attempts: int = limits.DEFAULT_MAX_ATTEMPTS
    backoff: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_BACKOFF))
    ttl_ms: int | None = None
    timeout_ms: int | None = None
    key: str | None = None
    subject: str | None = None
    tags: tuple[str, ...] = ()
    group: str | None = None
    # Jobs this one waits for (queues.dependents): distinct ids, at most MAX_DEPENDS_ON.
    depends_on: tuple[uuid.UUID, ...] = ()
    # Card numbers found at parse time, in data and in the strings stored in clear
    # (key, subject, tags); the push decides, knowing the queue's allow-list, which
    # covers only paths under data_path (queues.services).
    card_findings: tuple[CardFinding, ...] = ()
    data_path: str = "/data"
    data_bytes: int = 0  # encoded, for a queue's own lower cap
    # The encoding measured, sealed as it is (security.fields.Dumped): data is encoded
    # once per push.
    data_json: bytes | None = None


class Problems:
    """What is wrong with a request body, as field errors; sizes over a cap apart, since
    they make the answer a 413 instead of a 400."""

    def __init__(self) -> None:
        self.invalid: list[FieldError] = []
        self.too_large: list[FieldError] = []

    def raise_any(self) -> None:
        if self.too_large:
            raise PayloadTooLarge(
                "A value is larger than its limit.", errors=self.too_large + self.invalid
            )
        if self.invalid:
            raise InvalidInput("The request has invalid fields.", errors=self.invalid)


class _Collector:
    def __init__(self, problems: Problems, prefix: str) -> None:
        self.problems = problems
        self.errors = problems.invalid
        self.prefix = prefix

    def add(self, name: str, message: str) -> None:
        self.errors.append(FieldError(f"{self.prefix}/{name}", message))

    def integer(self, raw: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
        value = raw.get(name, default)
        if type(value) is not int:
            self.add(name, "must be an integer")
            return default
        if not low <= value <= high:
            self.add(name, f"must be between {low} and {high}")
            return default
        return value

    def text(self, raw: dict[str, Any], name: str, max_length: int) -> str | None:
        value = raw.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or not 1 <= len(value) <= max_length:
            self.add(name, f"must be a string of 1 to {max_length} characters")
            return None
        return value


def encoded_size(value: object) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON: what a cap in bytes measures."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def check_data(data: object, *, path: str, problems: Problems, max_bytes: int) -> int:
    """A job's data must be a JSON object of at most ``max_bytes`` encoded; its size."""
    size, _ = _checked_data(data, path=path, problems=problems, max_bytes=max_bytes)
    return size


def _checked_data(
    data: object, *, path: str, problems: Problems, max_bytes: int
) -> tuple[int, bytes | None]:
    """``check_data``, with the encoding measured (None if it cannot be sealed)."""
    if not isinstance(data, dict):
        problems.invalid.append(FieldError(path, "must be a JSON object"))
        return 0, None
    try:
        dumped: bytes | None = dump(data)
    except ValueError:  # NaN or infinity from a caller in Python: refused when sealed
        dumped = None
    size = encoded_size(data) if dumped is None else len(dumped)
    if size > max_bytes:
        problems.too_large.append(
            FieldError(path, f"is {size} bytes encoded; the limit is {max_bytes}")
        )
    else:
        problems.too_large.extend(payload_shape(data, path))
    return size, dumped


def payload_shape(value: object, path: str) -> list[FieldError]:
    """Depth, keys per object and items per array of a job's data or a result."""
    return [
        FieldError(where, reason)
        for where, reason in shape_problems(
            value,
            path,
            max_depth=limits.MAX_PAYLOAD_DEPTH,
            max_keys=limits.MAX_KEYS_PER_OBJECT,
            max_items=limits.MAX_ITEMS_PER_ARRAY,
        )
    ]


def _backoff(raw: object, collector: _Collector) -> dict[str, Any]:
    if raw is None:
        return dict(DEFAULT_BACKOFF)
    if not isinstance(raw, dict):
        collector.add("backoff", "must be an object with type and delay")
        return dict(DEFAULT_BACKOFF)
    sub = _Collector(collector.problems, f"{collector.prefix}/backoff")
    for name in sorted(set(raw) - BACKOFF_FIELDS):
        sub.add(pointer_segment(name), "is not a known field")
    kind = raw.get("type", DEFAULT_BACKOFF["type"])
    if kind not in ("fixed", "exponential"):
        sub.add("type", "must be 'fixed' or 'exponential'")
    jitter = raw.get("jitter", DEFAULT_BACKOFF["jitter"])
    if type(jitter) not in (int, float) or not 0 <= jitter <= 1:
        sub.add("jitter", "must be a number between 0 and 1")
    return {
        "type": kind,
        "delay": sub.integer(
            raw, "delay", DEFAULT_BACKOFF["delay"], 0, limits.MAX_BACKOFF_DELAY_MS
        ),
        "max": sub.integer(raw, "max", DEFAULT_BACKOFF["max"], 0, limits.MAX_BACKOFF_CAP_MS),
        "jitter": jitter,
    }


def _tags(raw: object, collector: _Collector) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > limits.MAX_TAGS:
        collector.add("tags", f"must be a list of at most {limits.MAX_TAGS} strings")
        return ()
    for index, tag in enumerate(raw):
        if not isinstance(tag, str) or not 1 <= len(tag) <= limits.MAX_TAG_LENGTH:
            collector.add(
                f"tags/{index}", f"must be a string of 1 to {limits.MAX_TAG_LENGTH} characters"
            )
    return tuple(raw)


def _depends_on(raw: object, collector: _Collector) -> tuple[uuid.UUID, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > limits.MAX_DEPENDS_ON:
        collector.add("depends_on", f"must be a list of at most {limits.MAX_DEPENDS_ON} job ids")
        return ()
    found: list[uuid.UUID] = []
    for index, item in enumerate(raw):
        job_id = _job_id(item)
        if job_id is None:
            collector.add(f"depends_on/{index}", "must be a job id (a UUID)")
        elif job_id in found:
            collector.add(f"depends_on/{index}", "is repeated")
        else:
            found.append(job_id)
    return tuple(found)


def _job_id(value: object) -> uuid.UUID | None:
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _cards_in_texts(
    key: str | None, subject: str | None, tags: tuple[str, ...], path: str, group: str | None
) -> list[CardFinding]:
    """Card numbers in the strings a job keeps in clear columns, visible to any getJob
    holder: no allow-list covers them."""
    found: list[CardFinding] = []
    for name, text in (("key", key), ("subject", subject), ("group", group)):
        if text is not None:
            found += find_cards_in_text(text, f"{path}/{name}")
    for index, tag in enumerate(tags):
        if isinstance(tag, str):  # an invalid tag is a 400 already
            found += find_cards_in_text(tag, f"{path}/tags/{index}")
    return found


def parse_job_spec(raw: object, *, path: str, problems: Problems, max_bytes: int) -> JobSpec | None:
    """A JobSpec from one push body, or None after adding what is wrong to problems."""
    if not isinstance(raw, dict):
        problems.invalid.append(FieldError(path or "/", "must be a JSON object"))
        return None
    before = len(problems.invalid) + len(problems.too_large)
    collector = _Collector(problems, path)
    for name in sorted(set(raw) - FIELDS):
        collector.add(pointer_segment(name), "is not a known field")
    size, dumped = 0, None
    if "data" not in raw:
        collector.add("data", "is required")
    else:
        size, dumped = _checked_data(
            raw["data"], path=f"{path}/data", problems=problems, max_bytes=max_bytes
        )
    ttl = raw.get("ttl")
    timeout = raw.get("timeout")
    # Checked in field order, so the errors are listed in that order.
    priority = collector.integer(raw, "priority", 0, -limits.MAX_PRIORITY, limits.MAX_PRIORITY)
    delay_ms = collector.integer(raw, "delay", 0, 0, limits.MAX_DELAY_MS)
    max_attempts = collector.integer(
        raw, "max_attempts", limits.DEFAULT_MAX_ATTEMPTS, 1, limits.MAX_ATTEMPTS
    )
    backoff = _backoff(raw.get("backoff"), collector)
    ttl_ms = None if ttl is None else collector.integer(raw, "ttl", 0, 1, limits.MAX_TTL_MS)
    timeout_ms = (
        None if timeout is None else collector.integer(raw, "timeout", 0, 1, limits.MAX_TIMEOUT_MS)
    )
    key = collector.text(raw, "key", limits.MAX_KEY_LENGTH)
    if key is not None and key.startswith(SCHEDULE_KEY_PREFIX):
        collector.add("key", f"may not start with {SCHEDULE_KEY_PREFIX!r}: kept for schedules")
        key = None
    subject = collector.text(raw, "subject", limits.MAX_SUBJECT_LENGTH)
    tags = _tags(raw.get("tags"), collector)
    group = collector.text(raw, "group", limits.MAX_GROUP_LENGTH)
    depends_on = _depends_on(raw.get("depends_on"), collector)
    spec = JobSpec(
        data=raw.get("data", {}),
        priority=priority,
        delay_ms=delay_ms,
        max_attempts=max_attempts,
        backoff=backoff,
        ttl_ms=ttl_ms,
        timeout_ms=timeout_ms,
        key=key,
        subject=subject,
        tags=tags,
        group=group,
        depends_on=depends_on,
        card_findings=(
            *find_cards(raw.get("data"), f"{path}/data"),
            *_cards_in_texts(key, subject, tags, path, group),
        ),
        data_path=f"{path}/data",
        data_bytes=size,
        data_json=dumped,
    )
    return spec if len(problems.invalid) + len(problems.too_large) == before else None


def subject_from(data: dict[str, Any], path: str) -> str | None:
    """The data subject at a dotted path in job data (e.g. ``user.id``), if present."""
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value)
    return text[: limits.MAX_SUBJECT_LENGTH] if text else None
