"""Raw-socket HTTP/1.1 helpers for the L7 proxy tests: write exact bytes, read exact responses.

Responses are framed with httptools (the same llhttp the proxy uses, but here only to find where
each response ends), so a test can pipeline requests, keep a connection open between requests,
and tell a clean close from a truncated body."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httptools


@dataclass
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    version: str = "1.1"
    keep_alive: bool = True

    def header(self, name: str) -> str | None:
        key = name.lower().encode()
        for k, v in self.headers:
            if k.lower() == key:
                return v.decode()
        return None

    def header_all(self, name: str) -> list[str]:
        key = name.lower().encode()
        return [v.decode() for k, v in self.headers if k.lower() == key]


class _Stream:
    """One llhttp response parser for the whole connection: pipelined responses come out in
    order, each ending exactly where llhttp says it ends."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.ready: list[Response] = []
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.keep_alive = True
        self.version = "1.1"

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        self.version = self.parser.get_http_version()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200 and self.status != 101:
            self._reset()  # interim response: the final one follows
            return
        self._emit()

    def _emit(self) -> None:
        self.ready.append(Response(self.status, self.headers, b"".join(self.body), self.version,
                                   self.keep_alive))
        self._reset()

    def eof(self) -> bool:
        """At EOF: a response whose body is delimited by the close is complete."""
        names = {k.lower() for k, _ in self.headers}
        if self.status >= 200 and b"content-length" not in names and b"transfer-encoding" not in names:
            self._emit()
            return True
        return False


class Truncated(Exception):
    """The connection closed before the response was complete."""

    def __init__(self, stream: _Stream) -> None:
        super().__init__(f"connection closed mid-response (status {stream.status}, "
                         f"{sum(map(len, stream.body))} body bytes)")
        self.status = stream.status
        self.received = sum(map(len, stream.body))


class RawClient:
    """One client connection to the proxy, driven byte by byte."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.stream = _Stream()

    @classmethod
    async def connect(cls, host: str, port: int, **kw: Any) -> RawClient:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20, **kw)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, *, timeout: float = 5.0) -> Response:
        """Read the next response (not for HEAD: see head_response)."""
        stream = self.stream
        async with asyncio.timeout(timeout):
            while not stream.ready:
                data = await self.reader.read(1 << 16)
                if not data:
                    if stream.status and stream.eof():
                        break
                    raise Truncated(stream)
                try:
                    stream.parser.feed_data(data)
                except httptools.HttpParserUpgrade:
                    pass  # a 101: what follows is no longer HTTP
        return stream.ready.pop(0)

    async def head_response(self, *, timeout: float = 5.0) -> Response:
        """Read a response to HEAD: a head whose Content-Length announces no body."""
        assert not self.stream.ready and not self.stream.status
        async with asyncio.timeout(timeout):
            raw = await self.reader.readuntil(b"\r\n\r\n")
        one = _Stream()
        one.parser.feed_data(raw)  # the head only: llhttp waits for a body that never comes
        return Response(one.status, one.headers, b"", one.version, one.keep_alive)

    async def closed(self, timeout: float = 5.0) -> bool:
        """True when the proxy closes the connection (EOF or reset) within timeout; bytes that
        arrive first are discarded."""
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(1 << 16):
                    pass
                return True
        except ConnectionError:
            return True
        except TimeoutError:
            return False

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass


def request(method: str, path: str, *, headers: dict[str, str] | list[tuple[str, str]] | None = None,
            body: bytes = b"", version: str = "1.1", host: str = "test") -> bytes:
    """A request as bytes; Content-Length is added for a body unless the headers frame it."""
    items = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    names = {k.lower() for k, _ in items}
    lines = [f"{method} {path} HTTP/{version}"]
    if "host" not in names and version == "1.1":
        lines.append(f"Host: {host}")
    lines += [f"{k}: {v}" for k, v in items]
    if body and "content-length" not in names and "transfer-encoding" not in names:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

