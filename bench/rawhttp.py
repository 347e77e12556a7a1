"""A bare HTTP/1.1 client connection for the bench's thousands of idle waiters
(bench/waiters.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from bench.run import HOST


class Connection:
    """A bare HTTP/1.1 keep-alive client connection: a request and its answer. Far
    cheaper than a general client for thousands of idle connections on the machine
    that is being measured."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(HOST, port)
        return cls(reader, writer)

    async def send(
        self, method: str, path: str, token: str, body: Any = None, *, accept: str = ""
    ) -> None:
        payload = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {token}\r\n"
        if accept:
            head += f"Accept: {accept}\r\n"
        if payload:
            head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + payload)
        await self.writer.drain()

    async def head(self) -> tuple[int, dict[str, str]]:
        """The answer's status and headers (names lower-cased)."""
        status_line = await self.reader.readline()
        if not status_line:
            raise ValueError("the server closed the connection")
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers

    async def body(self, headers: dict[str, str]) -> bytes:
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while size := int((await self.reader.readline()).split(b";")[0], 16):
                body += (await self.reader.readexactly(size + 2))[:-2]
            await self.reader.readline()
            return body
        return await self.reader.readexactly(int(headers.get("content-length", 0)))

    def close(self) -> None:
        self.writer.close()
