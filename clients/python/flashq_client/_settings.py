"""What a client is set up with, checked once for both clients: the API's base URL
(https, or plain http to this machine only), the token (never shown), the timeout and
the number of retries, producer mode's gathering, and the options of the ``httpx``
client each one keeps."""

from __future__ import annotations

import os
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import httpx

from .fields import FieldKeys, field_settings

try:
    # The installed distribution's version (pyproject's), for the User-Agent.
    __version__ = version("flashq-client")
except PackageNotFoundError:  # run from a source tree that is not installed
    __version__ = "0+unknown"

#: The most jobs the server takes in one batch push (``max_batch``'s ceiling).
MAX_BATCH = 1000
#: The most batch requests a producer-mode ``Client`` keeps in flight (its threads).
MAX_IN_FLIGHT = 32
#: Hosts a plain-http URL may name without ``allow_insecure_http``.
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def resolve_token(token: str | None) -> str:
    """The argument, else ``FLASHQ_TOKEN``, else the file ``FLASHQ_TOKEN_FILE`` names."""
    if not token:
        token = os.environ.get("FLASHQ_TOKEN") or None
    if not token:
        path = os.environ.get("FLASHQ_TOKEN_FILE")
        if path:
            try:
                token = Path(path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(f"FLASHQ_TOKEN_FILE cannot be read: {exc.strerror}") from None
    if not token:
        raise ValueError("no API token: pass token=, or set FLASHQ_TOKEN or FLASHQ_TOKEN_FILE")
    if not token.isascii() or not token.isprintable() or " " in token:
        # Said without the value: a header could not carry it anyway.
        raise ValueError("the API token has characters an HTTP header cannot carry")
    return token


class BearerAuth(httpx.Auth):
    """Adds the bearer token to each request (sync or async); its repr never shows it."""

    def __init__(self, token: str) -> None:
        self.__token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.__token}"
        yield request

    def __repr__(self) -> str:
        return "<bearer token>"


def api_root(base_url: str, *, allow_insecure_http: bool) -> str:
    """``base_url`` (the server or its API root) as the API root, ending in ``/api/v1/``."""
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"invalid base_url: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("base_url must be an http:// or https:// URL with a host")
    if url.scheme == "http" and url.host not in LOCAL_HOSTS and not allow_insecure_http:
        raise ValueError(
            f"refusing plain http:// to {url.host}: the token would cross the network "
            "unencrypted; use https://, or pass allow_insecure_http=True"
        )
    if url.username or url.password:
        raise ValueError("base_url must not carry credentials")
    path = url.path.rstrip("/")
    if not path.endswith("/api/v1"):
        path += "/api/v1"
    return str(url.copy_with(path=path + "/", query=None, fragment=None))


@dataclass(frozen=True)
class Settings:
    """One client's options, the same for ``Client`` and ``AsyncClient``: an option added
    here (and to ``build``) reaches both."""

    base_url: str
    timeout: float
    max_retries: int
    auth: BearerAuth = field(repr=False)
    #: Client-side field encryption (``flashq_client.fields``): the keys, and the dotted
    #: paths sealed on push.
    field_keys: FieldKeys | None = field(default=None, repr=False)
    encrypt_fields: tuple[str, ...] = ()
    #: Producer mode (``_producer``, ``_gather``): pushes to one queue within
    #: ``linger_ms`` of the first, up to ``max_batch``, go as one batch request.
    #: ``Client``'s senders keep up to ``max_in_flight`` batch requests in flight and
    #: hold at most ``max_pending`` pushes (``AsyncClient`` does not use these two).
    producer: bool = False
    linger_ms: float = 2.0
    max_batch: int = 500
    max_in_flight: int = 4
    max_pending: int = 10_000

    @classmethod
    def build(
        cls,
        base_url: str,
        token: str | None,
        *,
        timeout: float,
        max_retries: int,
        allow_insecure_http: bool,
        field_keys: FieldKeys | None = None,
        encrypt_fields: Sequence[str] = (),
        producer: bool = False,
        linger_ms: float = 2.0,
        max_batch: int = 500,
        max_in_flight: int = 4,
        max_pending: int = 10_000,
    ) -> Settings:
        """The settings of a client, or ValueError naming what is wrong (never the token)."""
        root = api_root(base_url, allow_insecure_http=allow_insecure_http)
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        if not 0 <= linger_ms <= 1000:
            raise ValueError("linger_ms must be between 0 and 1000")
        if not 1 <= max_batch <= MAX_BATCH:
            raise ValueError(f"max_batch must be between 1 and {MAX_BATCH}")
        if not 1 <= max_in_flight <= MAX_IN_FLIGHT:
            raise ValueError(f"max_in_flight must be between 1 and {MAX_IN_FLIGHT}")
        if max_pending < 1:
            raise ValueError("max_pending must be 1 or more")
        keys, paths = field_settings(field_keys, encrypt_fields)
        return cls(
            root,
            timeout,
            max_retries,
            BearerAuth(resolve_token(token)),
            keys,
            paths,
            producer=producer,
            linger_ms=linger_ms,
            max_batch=max_batch,
            max_in_flight=max_in_flight,
            max_pending=max_pending,
        )

    def http_options(self) -> dict[str, Any]:
        """The keyword arguments of the ``httpx.Client`` or ``httpx.AsyncClient``."""
        return {
            "base_url": self.base_url,
            "auth": self.auth,
            "timeout": self.timeout,
            "follow_redirects": False,
            # No HTTP_PROXY & co. from the environment: a proxy for plain http to
            # localhost would see the bearer token in clear.
            "trust_env": False,
            "headers": {
                "User-Agent": f"flashq-client/{__version__}",
                "Accept": "application/json, application/problem+json",
            },
        }
