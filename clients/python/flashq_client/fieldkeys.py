"""Field keys and the sealed format of ``flashq_client.fields``: AES-256-GCM keys by id,
the current one sealing, every one opening.

A sealed value is ``fq1:<key id>:<base64url(nonce | ciphertext | tag)>``: the value's
JSON text under a random 96-bit nonce, with the format, the key id, the queue's name and
the field's path as associated data. Keys never appear in a ``repr``, a log line or an
exception, and a ``FieldKeys`` is not pickled.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

from .errors import FieldDecryptionError

FORMAT = "fq1"
PREFIX = FORMAT + ":"
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
#: The environment variables keys are read from: ``id:base64`` entries separated by
#: commas or whitespace (the last one seals), or a file holding the same.
KEYS_ENV = "FLASHQ_FIELD_KEYS"
KEYS_FILE_ENV = "FLASHQ_FIELD_KEYS_FILE"
KEY_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
_SEALED = re.compile(r"fq1:([A-Za-z0-9_.-]{1,64}):([A-Za-z0-9_-]+)\Z")

#: A parsed path: object keys, ``None`` for every element of an array.
FieldPath = tuple[str | None, ...]


def new_key() -> bytes:
    """A new random field key.

    Returns:
        32 random bytes from the operating system, for ``FieldKeys``; write it where
        ``FLASHQ_FIELD_KEYS`` reads it as ``base64.b64encode(key)``.
    """
    return os.urandom(KEY_BYTES)


class FieldKeys:
    """Field keys by id: the current one seals, every one opens (rotation).

    Args:
        keys: key id (1 to 64 of ``A-Z a-z 0-9 _ . -``) to a 32-byte key, oldest first.
        current: the id that seals new values; by default the last of ``keys``.

    Raises:
        ValueError: a key id or key is malformed, or ``current`` is not among them.
        ImportError: ``cryptography`` is not installed (``flashq-client[fields]``).
    """

    def __init__(self, keys: Mapping[str, bytes], *, current: str | None = None) -> None:
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError:
            raise ImportError(
                "encrypted fields need the cryptography package: "
                "pip install 'flashq-client[fields]'"
            ) from None
        if not keys:
            raise ValueError("FieldKeys needs at least one key")
        self._ciphers: dict[str, Any] = {}
        for key_id, key in keys.items():
            if not isinstance(key_id, str) or not KEY_ID.match(key_id):
                raise ValueError("a key id is 1 to 64 of A-Z a-z 0-9 _ . -")
            if not isinstance(key, bytes | bytearray) or len(key) != KEY_BYTES:
                # Said without the key: its length only.
                raise ValueError(f"field key {key_id} must be {KEY_BYTES} bytes (AES-256)")
            self._ciphers[key_id] = AESGCM(bytes(key))
        self.current = current if current is not None else list(keys)[-1]
        if self.current not in self._ciphers:
            raise ValueError(f"the current key {self.current!r} is not among the keys")

    @property
    def ids(self) -> tuple[str, ...]:
        """The key ids, in the order given."""
        return tuple(self._ciphers)

    @classmethod
    def from_text(cls, text: str, *, source: str = "field keys") -> FieldKeys:
        """Keys written as ``id:base64`` entries, separated by commas or whitespace.

        Args:
            text: the entries, oldest first; the last one seals. Standard or URL-safe
                base64, padded or not.
            source: what to call the text in an error (an environment variable's name).

        Returns:
            The keys.

        Raises:
            ValueError: an entry is malformed (said by its position, never its text).
        """
        keys: dict[str, bytes] = {}
        for number, entry in enumerate(re.split(r"[,\s]+", text.strip()), start=1):
            # No text of an entry is ever shown: without its "id:" an entry may be a bare
            # key, and its id part would then be the key itself.
            key_id, colon, encoded = entry.partition(":")
            if not colon or not KEY_ID.match(key_id) or key_id in keys:
                raise ValueError(f"{source}: entry {number} is not a new id:base64 key")
            try:
                keys[key_id] = _b64decode(encoded)
            except (binascii.Error, ValueError):
                raise ValueError(f"{source}: entry {number} is not base64") from None
            if len(keys[key_id]) != KEY_BYTES:
                raise ValueError(f"{source}: entry {number} is not {KEY_BYTES} bytes")
        return cls(keys)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> FieldKeys | None:
        """The keys in ``FLASHQ_FIELD_KEYS``, else in the file ``FLASHQ_FIELD_KEYS_FILE``
        names, as ``from_text`` reads them.

        Args:
            environ: the environment to read (default ``os.environ``).

        Returns:
            The keys, or None when neither variable is set.

        Raises:
            ValueError: the file cannot be read or an entry is malformed.
        """
        env = os.environ if environ is None else environ
        if env.get(KEYS_ENV):
            return cls.from_text(env[KEYS_ENV], source=KEYS_ENV)
        path = env.get(KEYS_FILE_ENV)
        if not path:
            return None
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"{KEYS_FILE_ENV} cannot be read: {exc.strerror}") from None
        return cls.from_text(text, source=KEYS_FILE_ENV)

    def seal(self, value: Any, *, queue: str, path: FieldPath) -> str:
        """One value sealed with the current key (``seal_fields`` seals a job's fields).

        Args:
            value: any JSON value; sealed as its JSON text.
            queue: the queue of the job it goes into.
            path: where in the job's data it goes (``parse_path``).

        Returns:
            ``fq1:<key id>:<base64url(nonce | ciphertext | tag)>``.

        Raises:
            ValueError: the value is not JSON (NaN, a set...); the value is not shown.
        """
        try:
            plain = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError):
            # Not the exception's text: it may quote the value.
            raise ValueError(f"field {dotted(path)}: the value is not JSON") from None
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self.current].encrypt(
            nonce, plain.encode(), _associated(self.current, queue, path)
        )
        token = base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode()
        return f"{PREFIX}{self.current}:{token}"

    def open(self, text: str, *, queue: str, path: FieldPath) -> Any:
        """The value a sealed string holds (``open_fields`` opens a job's data).

        Args:
            text: the sealed string.
            queue: the queue of the job it was found in.
            path: where in the job's data it was found.

        Returns:
            The JSON value that was sealed.

        Raises:
            FieldDecryptionError: ``field_key_missing``: no key with its id;
                ``field_open_failed``: malformed, tampered, sealed with another key of
                that id, or for another queue or field.
        """
        from cryptography.exceptions import InvalidTag

        match = _SEALED.match(text)
        if match is None:
            refuse("field_open_failed", path, "it is not a well-formed fq1 value")
        key_id = match.group(1)
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            refuse("field_key_missing", path, f"no key {key_id!r} among {list(self.ids)}")
        try:
            blob = _b64decode(match.group(2))
        except (binascii.Error, ValueError):
            refuse("field_open_failed", path, "it is not well-formed base64")
        if len(blob) < NONCE_BYTES + TAG_BYTES:
            refuse("field_open_failed", path, "it is too short")
        try:
            plain = cipher.decrypt(
                blob[:NONCE_BYTES], blob[NONCE_BYTES:], _associated(key_id, queue, path)
            )
        except InvalidTag:
            refuse(
                "field_open_failed",
                path,
                f"key {key_id!r} does not open it in queue {queue!r} (a wrong key, a "
                "changed value, or a value sealed for another queue or field)",
            )
        return json.loads(plain)

    def __repr__(self) -> str:
        return f"FieldKeys(ids={list(self.ids)!r}, current={self.current!r})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("FieldKeys are not pickled: the keys would go with them")


def _b64decode(text: str) -> bytes:
    text = text.strip().replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _associated(key_id: str, queue: str, path: FieldPath) -> bytes:
    # A JSON list: no queue name or key can make one value's data another's.
    return json.dumps([FORMAT, key_id, queue, list(path)], separators=(",", ":")).encode()


def dotted(path: FieldPath) -> str:
    """A parsed path written as ``encrypt_fields`` names it.

    Args:
        path: the parts, ``None`` for an array's elements.

    Returns:
        The dotted path, ``*`` for an array's elements.
    """
    return ".".join("*" if part is None else part for part in path)


def refuse(code: str, path: FieldPath, why: str) -> NoReturn:
    """Refuse to open the field at ``path``.

    Args:
        code: ``field_key_missing`` or ``field_open_failed``.
        path: the field.
        why: the reason, naming no value and no key.

    Raises:
        FieldDecryptionError: always.
    """
    raise FieldDecryptionError(f"field {dotted(path)} cannot be opened: {why}", code=code)


def is_sealed(value: Any) -> bool:
    """Whether a value is a sealed string.

    Args:
        value: any JSON value.

    Returns:
        True for a string in the sealed format (``fq1:<key id>:<base64url>``).
    """
    return isinstance(value, str) and _SEALED.match(value) is not None
