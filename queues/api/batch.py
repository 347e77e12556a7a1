"""Plain-code parsing of push and batch bodies (up to MAX_BATCH items each)."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings

from kernel.limits import MAX_BATCH
from kernel.problems import FieldError, InvalidInput, pointer_segment

from ..jobspec import JobSpec, Problems, parse_job_spec
from ..services import AckSpec


def _items(body: Any, *, allowed: frozenset[str]) -> list[Any]:
    if not isinstance(body, dict):
        raise InvalidInput(
            "The body must be a JSON object.", errors=[FieldError("/", "must be an object")]
        )
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidInput(
            "The request has invalid fields.",
            errors=[
                FieldError(f"/{pointer_segment(name)}", "is not a known field") for name in unknown
            ],
        )
    items = body.get("jobs")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
        raise InvalidInput(
            "The request has invalid fields.",
            errors=[FieldError("/jobs", f"must be a list of 1 to {MAX_BATCH} items")],
        )
    return items


def parse_push_batch(body: Any) -> list[JobSpec]:
    items = _items(body, allowed=frozenset({"jobs"}))
    problems = Problems()
    specs = [
        parse_job_spec(
            item, path=f"/jobs/{index}", problems=problems, max_bytes=settings.MAX_JOB_BYTES
        )
        for index, item in enumerate(items)
    ]
    problems.raise_any()
    return [spec for spec in specs if spec is not None]


def parse_push(body: Any) -> JobSpec:
    problems = Problems()
    spec = parse_job_spec(body, path="", problems=problems, max_bytes=settings.MAX_JOB_BYTES)
    problems.raise_any()
    assert spec is not None
    return spec


def _uuid(item: dict[str, Any], name: str, path: str, errors: list[FieldError]) -> uuid.UUID | None:
    value = item.get(name)
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    errors.append(FieldError(f"{path}/{name}", "must be a UUID"))
    return None


def parse_ack_batch(body: Any) -> list[AckSpec]:
    return parse_acks(_items(body, allowed=frozenset({"jobs"})), root="/jobs")


def parse_pull_acks(items: Any) -> list[AckSpec]:
    """A pull's ``ack``: a list of at most MAX_BATCH items (empty is fine)."""
    if not isinstance(items, list) or len(items) > MAX_BATCH:
        raise InvalidInput(
            "The request has invalid fields.",
            errors=[FieldError("/ack", f"must be a list of at most {MAX_BATCH} items")],
        )
    return parse_acks(items, root="/ack")


def parse_acks(items: list[Any], *, root: str) -> list[AckSpec]:
    """``{id, lease_id, result?}`` items (the batch ack's ``jobs``, a pull's ``ack``);
    field paths start at ``root``."""
    errors: list[FieldError] = []
    acks: list[AckSpec] = []
    seen: set[uuid.UUID] = set()
    for index, item in enumerate(items):
        path = f"{root}/{index}"
        if not isinstance(item, dict):
            errors.append(FieldError(path, "must be an object with id and lease_id"))
            continue
        for name in sorted(set(item) - {"id", "lease_id", "result"}):
            errors.append(FieldError(f"{path}/{pointer_segment(name)}", "is not a known field"))
        job_id = _uuid(item, "id", path, errors)
        lease_id = _uuid(item, "lease_id", path, errors)
        if job_id is None or lease_id is None:
            continue
        if job_id in seen:
            errors.append(FieldError(f"{path}/id", "is repeated in this batch"))
        seen.add(job_id)
        acks.append(AckSpec(job_id=job_id, lease_id=lease_id, result=item.get("result")))
    if errors:
        raise InvalidInput("The request has invalid fields.", errors=errors)
    return acks
