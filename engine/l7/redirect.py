"""`http-request redirect scheme https` on a frontend's plain binds: every request is answered
with a redirect to the same host and path on the new scheme; no server is asked.

As HAProxy: the Location is the scheme, "://", the Host header and the request URI; with a
redirect port the Host's port is replaced by it. Keep-alive and pipelining are honoured; a
request without Host (HTTP/1.0) or that does not parse gets a 400."""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httptools

from virtserve.engine.l7.responses import ERROR
from virtserve.schedulers.base import PickContext

if TYPE_CHECKING:
    from virtserve.engine.frontend import Frontend

_REASONS = {301: b"Moved Permanently", 302: b"Found", 303: b"See Other",
            307: b"Temporary Redirect", 308: b"Permanent Redirect"}
MAX_HEAD = 32 * 1024


class RedirectProtocol(asyncio.Protocol):
    __slots__ = ("fe", "state", "transport", "parser", "host", "url", "size", "deadline", "closed",
                 "status_line", "prefix", "port", "ctx", "scheme", "added")

    def __init__(self, fe: Frontend) -> None:
        spec = fe.spec.redirect
        assert spec is not None
        self.fe = fe
        self.state = fe.state
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = httptools.HttpRequestParser(self)
        self.status_line = b"HTTP/1.1 %d %s\r\n" % (spec.code, _REASONS[spec.code])
        self.prefix = spec.scheme.encode() + b"://"
        self.port = b":%d" % spec.port if spec.port else b""
        self.host = b""
        self.url = b""
        self.size = 0
        self.deadline = 0.0
        self.closed = False
        self.ctx = PickContext()  # the client, as listeners.Origin may set it
        self.scheme = self.added = b""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        self.state.conns.add(self)
        self.deadline = self.state.now + self.fe.t_http_request

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.size += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # answered at on_message_complete like any request
        except httptools.HttpParserError:
            self._fail(400)
            return
        if self.size > MAX_HEAD and not self.closed:
            self._fail(400)

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"host":
            self.host = value

    def on_message_complete(self) -> None:
        if self.closed:
            return
        host = self.host
        if not host or b"\r" in host or b"\n" in host:
            self._fail(400)
            return
        if self.port:
            host = _without_port(host) + self.port
        keep = self.parser.should_keep_alive()
        self.transport.write(b"".join((
            self.status_line, b"location: ", self.prefix, host, self.url,
            b"\r\ncontent-length: 0\r\n", b"" if keep else b"connection: close\r\n", b"\r\n")))
        self.host = self.url = b""
        self.size = 0
        if keep:
            self.deadline = self.state.now + self.fe.t_keep_alive
        else:
            self._close()

    def _fail(self, status: int) -> None:
        self.transport.write(ERROR[status])
        self._close()

    def _close(self) -> None:
        self.closed = True
        self.deadline = 0.0
        self.transport.close()

    def idle(self) -> bool:
        return True

    def on_deadline(self) -> None:
        self._close()

    def eof_received(self) -> bool:
        self._close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.deadline = 0.0
        self.state.conns.discard(self)


def _without_port(host: bytes) -> bytes:
    if host.startswith(b"["):  # [v6]:port
        end = host.find(b"]")
        return host[:end + 1] if end > 0 else host
    return host.rsplit(b":", 1)[0] if b":" in host else host
