"""End-to-end encrypted fields: sealed on the client, opened in the worker.

The fields a producer names (``encrypt_fields=["ssn", "card.token", "items.*.iban"]``)
are replaced in a job's data, before it leaves the client, by opaque strings::

    fq1:<key id>:<base64url(nonce | ciphertext | tag)>

AES-256-GCM over the value's JSON text, a random 96-bit nonce per value, and as
associated data the format, the key id, the queue's name and the field's path, so a
sealed value copied to another queue or another field does not open. The server only
ever holds the opaque string; the worker opens every ``fq1:`` string of a job's data
with the keys it was given before its handler sees the job.

Paths are dotted object keys (``card.token``); ``*`` stands for every element of an
array (``items.*.iban``), and the path bound into a value is the pattern, so elements
may be reordered. A path missing from the data is skipped. Keys that hold a dot, or are
``*``, cannot be named. Strings starting ``fq1:`` are reserved for sealed values.

Keys (``FieldKeys``) are 32-byte AES-256 keys by id; the current one (the last given,
or ``current=``) seals and every one opens, so keys rotate by adding a new one. They
never appear in a ``repr``, a log line or an exception. ``cryptography`` is needed only
where keys are made: ``pip install 'flashq-client[fields]'``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any, TypeVar

from .errors import FieldDecryptionError
from .fieldkeys import KEYS_ENV, PREFIX, FieldKeys, FieldPath, dotted, is_sealed, new_key, refuse

_Job = TypeVar("_Job", bound=Mapping[str, Any])


@lru_cache(maxsize=256)
def parse_path(text: str) -> FieldPath:
    """A dotted field path (``card.token``, ``items.*.iban``) as its parts.

    Args:
        text: the path; ``*`` stands for every element of an array.

    Returns:
        The object keys in order, ``None`` for ``*``.

    Raises:
        ValueError: the path is empty or has an empty part.
    """
    if not isinstance(text, str) or not text or any(not part for part in text.split(".")):
        raise ValueError(f"{text!r} is not a field path like card.token or items.*.iban")
    return tuple(None if part == "*" else part for part in text.split("."))


def field_settings(
    keys: FieldKeys | None, paths: Iterable[str]
) -> tuple[FieldKeys | None, tuple[str, ...]]:
    """A client's ``field_keys`` and ``encrypt_fields``, checked.

    Args:
        keys: the keys; None reads ``FLASHQ_FIELD_KEYS`` (``FieldKeys.from_env``).
        paths: the fields to seal on push.

    Returns:
        The keys (None: none given or set) and the paths as a tuple.

    Raises:
        ValueError: a path is malformed, one path lies within another, ``paths`` is a
            single string, or there are paths and no keys.
    """
    if isinstance(paths, str):
        raise ValueError("encrypt_fields is a list of paths, e.g. ['ssn']")
    checked = tuple(paths)
    parsed = [parse_path(path) for path in checked]
    for one in parsed:
        for other in parsed:
            if one != other and other[: len(one)] == one:
                raise ValueError(
                    f"encrypt_fields: {dotted(other)} lies within {dotted(one)}: name one"
                )
    keys = keys if keys is not None else FieldKeys.from_env()
    if checked and keys is None:
        raise ValueError(f"encrypt_fields needs field_keys (or {KEYS_ENV})")
    return keys, checked


def seal_fields(
    data: Mapping[str, Any], queue: str, paths: Sequence[str], keys: FieldKeys | None
) -> Mapping[str, Any]:
    """A copy of a job's data with the values at ``paths`` sealed for ``queue``.

    Args:
        data: the job's data (left unchanged).
        queue: the queue the job is pushed to: only a job of that queue opens them.
        paths: dotted paths (``*`` for every element of an array); a missing one is
            skipped, and a value already sealed stays as it is.
        keys: the keys; the current one seals.

    Returns:
        ``data`` itself when there is nothing to seal, else a copy (the objects and
        arrays on the paths copied, the rest shared).

    Raises:
        ValueError: a value is not JSON (NaN, a set...), a path is malformed, or
            there are paths and no keys.
    """
    if not paths:
        return data
    if keys is None:
        raise ValueError(f"encrypt_fields needs field_keys (or {KEYS_ENV})")
    result: Any = data
    for text in paths:
        path = parse_path(text)
        result = _seal_at(result, path, 0, keys, queue)
    return result  # type: ignore[no-any-return]


def _seal_at(node: Any, path: FieldPath, depth: int, keys: FieldKeys, queue: str) -> Any:
    if depth == len(path):
        return node if is_sealed(node) else keys.seal(node, queue=queue, path=path)
    part = path[depth]
    if part is None:
        if not isinstance(node, list):
            return node
        return [_seal_at(item, path, depth + 1, keys, queue) for item in node]
    if not isinstance(node, Mapping) or part not in node:
        return node
    child = node[part]
    changed = _seal_at(child, path, depth + 1, keys, queue)
    return node if changed is child else {**node, part: changed}


def open_fields(data: Any, queue: str, keys: FieldKeys | None) -> Any:
    """A copy of a job's data with every sealed string in it opened.

    Args:
        data: the job's data as the server holds it (``pull``, ``get_job``, ``wait``).
        queue: the job's queue (``job["queue"]``).
        keys: the keys to open with; None opens nothing and fails on a sealed value.

    Returns:
        The data with the clear values; ``data`` itself when nothing in it was sealed.

    Raises:
        FieldDecryptionError: a value cannot be opened (``field_key_missing``: no key
            with its id; ``field_open_failed``: wrong key, tampered, or sealed for
            another queue or field). The message names the field and key id only.
    """
    return _open_in(data, (), queue, keys)


def _open_in(node: Any, path: FieldPath, queue: str, keys: FieldKeys | None) -> Any:
    if isinstance(node, str):
        if not node.startswith(PREFIX):
            return node
        if keys is None:
            refuse("field_key_missing", path, "this client has no field keys")
        return keys.open(node, queue=queue, path=path)
    if isinstance(node, dict):
        opened = {key: _open_in(value, (*path, key), queue, keys) for key, value in node.items()}
        unchanged = all(opened[key] is value for key, value in node.items())
        return node if unchanged else opened
    if isinstance(node, list):
        items = [_open_in(item, (*path, None), queue, keys) for item in node]
        return node if all(a is b for a, b in zip(items, node, strict=True)) else items
    return node


def open_job(job: _Job, keys: FieldKeys | None) -> _Job:
    """A leased job with its data opened (``open_fields``), for a worker's handler.

    Args:
        job: the job as ``pull`` returns it (``queue`` and ``data``).
        keys: the worker's client's ``field_keys``.

    Returns:
        ``job`` itself when nothing was sealed, else a copy with the clear data.

    Raises:
        FieldDecryptionError: a value cannot be opened, as ``open_fields`` says.
    """
    data = job.get("data")
    opened = open_fields(data, job["queue"], keys)
    return job if opened is data else {**job, "data": opened}  # type: ignore[return-value]


def seal_jobs(
    jobs: Sequence[Mapping[str, Any]], queue: str, paths: Sequence[str], keys: FieldKeys | None
) -> Sequence[Mapping[str, Any]]:
    """Push bodies (``push_batch``'s) with each one's ``data`` sealed for ``queue``.

    Args:
        jobs: the push bodies (left unchanged).
        queue: the queue they are pushed to.
        paths: the fields to seal, as ``seal_fields`` takes them.
        keys: the keys; the current one seals.

    Returns:
        ``jobs`` itself when there are no paths, else copies with the data sealed.

    Raises:
        ValueError: as ``seal_fields``.
    """
    if not paths:
        return jobs
    return [_seal_body(job, queue, paths, keys) for job in jobs]


def _seal_body(
    job: Mapping[str, Any], queue: str, paths: Sequence[str], keys: FieldKeys | None
) -> Mapping[str, Any]:
    if not isinstance(job.get("data"), Mapping):
        return job
    return {**job, "data": seal_fields(job["data"], queue, paths, keys)}


def seal_flow(
    queue: str,
    job: Mapping[str, Any],
    children: Sequence[Mapping[str, Any]],
    paths: Sequence[str],
    keys: FieldKeys | None,
) -> tuple[Mapping[str, Any], Sequence[Mapping[str, Any]]]:
    """A flow with every node's data sealed for that node's own queue.

    Args:
        queue: the root's queue.
        job: the root's push body.
        children: ``push_flow``'s children, ``{"queue", "job", "children"?}`` each.
        paths: the fields to seal, as ``seal_fields`` takes them.
        keys: the keys; the current one seals.

    Returns:
        The root's body and the children, copied where sealed (the input unchanged).

    Raises:
        ValueError: as ``seal_fields``.
    """
    if not paths:
        return job, children
    return _seal_body(job, queue, paths, keys), [
        _seal_child(child, paths, keys) for child in children
    ]


def check_sealed(data: Mapping[str, Any] | None, paths: Sequence[str]) -> None:
    """Refuse data that holds a clear value at one of ``paths`` (``update`` cannot seal
    it: it does not know the job's queue).

    Args:
        data: the new data (None: no data is sent).
        paths: the client's ``encrypt_fields``.

    Raises:
        ValueError: a path holds a value that is not sealed.
    """
    for text in paths if data is not None else ():
        path = parse_path(text)
        if any(not is_sealed(value) for value in _values_at(data, path)):
            raise ValueError(
                f"update cannot seal {text} (it does not know the job's queue): pass "
                "seal_fields(data, queue, ...) or the job's data as get_job returned it"
            )


def _values_at(node: Any, path: FieldPath) -> Iterable[Any]:
    if not path:
        yield node
    elif path[0] is None and isinstance(node, list):
        for item in node:
            yield from _values_at(item, path[1:])
    elif isinstance(node, Mapping) and path[0] in node:
        yield from _values_at(node[path[0]], path[1:])


def _seal_child(
    child: Mapping[str, Any], paths: Sequence[str], keys: FieldKeys | None
) -> Mapping[str, Any]:
    node = dict(child)
    if isinstance(node.get("job"), Mapping) and isinstance(node.get("queue"), str):
        node["job"] = _seal_body(node["job"], node["queue"], paths, keys)
    if node.get("children"):
        node["children"] = [_seal_child(grandchild, paths, keys) for grandchild in node["children"]]
    return node


__all__ = [
    "FieldDecryptionError",
    "FieldKeys",
    "new_key",
    "open_fields",
    "open_job",
    "seal_fields",
]
