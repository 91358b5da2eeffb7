"""The server side of an HTTP exchange: one pooled keep-alive connection to a real server.

Responses are forwarded as the bytes arrive; httptools only finds where each message ends
(two callbacks per response, none per header). Bytes are held back only until the response
head is complete, so a server that sends garbage still gets the client a clean 502."""
from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

import httptools

from virtserve.engine.l7.closing import mark_close
from virtserve.engine.persist import edit_response
from virtserve.engine.upstream.pool import MAX_IDLE_PER_SERVER

if TYPE_CHECKING:
    from virtserve.engine.backend import Server
    from virtserve.engine.frontend import Frontend
    from virtserve.engine.l7.protocol import Exchange, HttpProxyProtocol

MAX_RESPONSE_HEAD = 64 * 1024  # bytes held for a response head before it is judged invalid (502)

_FRAMED = re.compile(rb"\r\n(content-length|transfer-encoding)[ \t]*:", re.IGNORECASE)


class _HeadResponseEnd(Exception):
    """Raised from a callback to stop the parser at the end of a response to HEAD, whose
    Content-Length announces a body that never comes (httptools cannot be told)."""


class HttpUpstreamProtocol(asyncio.Protocol):
    __slots__ = (
        "fe", "server", "state", "transport", "parser", "client", "ex", "deadline", "reused",
        "head_done", "final", "done", "keep_alive", "poolable", "held", "held_size", "first_chunk",
        "tunnel", "status", "key",
    )

    def __init__(self, fe: Frontend, server: Server) -> None:
        self.fe = fe
        self.server = server
        self.key: object = server  # its list in the pool (upstream/pool.py)
        self.state = fe.state
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = httptools.HttpResponseParser(self)
        self.client: HttpProxyProtocol | None = None
        self.ex: Exchange | None = None
        self.deadline = 0.0
        self.reused = False
        self.tunnel = False
        self._reset()

    def _reset(self) -> None:
        self.head_done = False  # a final (non-1xx) response head was seen
        self.final = False
        self.done = False
        self.keep_alive = False  # what the response says (Connection, version)
        self.poolable = True  # false when the server sent more than the response
        self.held: list[bytes] | None = None  # bytes before the head was complete
        self.held_size = 0
        self.first_chunk = b""
        self.status = 0

    # --- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        self.state.conns.add(self)

    def attach(self, client: HttpProxyProtocol, ex: Exchange) -> None:
        """Start serving ex for client: send its head and whatever body is already buffered."""
        self.client = client
        self.ex = ex
        ex.conn = self
        # self._reset(), inline (once per request)
        self.head_done = self.final = self.done = self.keep_alive = False
        self.poolable = True
        self.held = None
        self.held_size = self.status = 0
        self.first_chunk = b""
        self.deadline = self.state.now + self.fe.t_server
        if client.blocked:
            # The client is still behind on earlier responses (pipelining): its
            # resume_writing will start this one; reading now would buffer without bound.
            self.transport.pause_reading()
            self.deadline = 0.0
        pending = ex.pending
        if pending:
            ex.pending = []
            ex.pending_size = 0
            self.transport.write(ex.head + b"".join(pending))
            client.resume_body()
        else:
            self.transport.write(ex.head)

    def data_received(self, data: bytes) -> None:
        client = self.client
        if self.tunnel:
            client.transport.write(data)  # type: ignore[union-attr]
            self.ex.bytes_out += len(data)  # type: ignore[union-attr]
            now = self.state.now
            self.deadline = now + self.fe.t_server
            client.deadline = now + self.fe.t_client  # type: ignore[union-attr]
            return
        if client is None:  # an idle connection must not talk: drop it
            self.transport.close()
            return
        self.deadline = self.state.now + self.fe.t_server
        if not self.first_chunk:
            self.first_chunk = data
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self.status == 101:
                self._flush(data)
                self.tunnel = True
                client.start_tunnel(self)
                return
            self._invalid()
            return
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, _HeadResponseEnd):
                raise
            self.parser = httptools.HttpResponseParser(self)
            self.done = True
            data = self._head_only(data)
        except httptools.HttpParserError:
            self._invalid()
            return
        if not self.head_done:
            if self.held is None:
                self.held = [data]
            else:
                self.held.append(data)
            self.held_size += len(data)
            if self.held_size > MAX_RESPONSE_HEAD:  # a head that does not end: held no longer
                self._invalid()
            return
        ex = self.ex
        if self.held is None and ex.response_edit is None:  # type: ignore[union-attr]
            client.transport.write(data)  # the common case, inline: bytes as they came
            ex.response_started = True  # type: ignore[union-attr]
            ex.bytes_out += len(data)  # type: ignore[union-attr]
        else:
            self._flush(data)
        if self.done:
            self._finish(close_client=False)

    def _flush(self, data: bytes) -> None:
        held = self.held
        if held:
            held.append(data)
            data = self.first_chunk = b"".join(held)  # the whole head, for connection_lost
            self.held = None
        ex = self.ex
        if ex.response_edit is not None and self.final:  # type: ignore[union-attr]
            data = edit_response(data, ex.response_edit)  # type: ignore[union-attr]
            ex.response_edit = None  # type: ignore[union-attr]
        self.client.transport.write(data)  # type: ignore[union-attr]
        ex = self.ex
        ex.response_started = True  # type: ignore[union-attr]
        ex.bytes_out += len(data)  # type: ignore[union-attr]

    def _head_only(self, data: bytes) -> bytes:
        """The response to HEAD ends with its head; llhttp stopped there but cannot say where.
        Whatever the server sent after it (a body it should not send) is not forwarded, and the
        connection is not reused, or those bytes would be read as the next response."""
        if self.held:
            data = b"".join(self.held) + data
            self.held = None
        pos = 0
        while True:
            end = data.find(b"\r\n\r\n", pos)
            if end < 0:  # the head's end was split across reads (after a 1xx): cannot tell
                return data
            if data[pos + 9:pos + 10] != b"1":  # not an interim (1xx) head before it
                break
            pos = end + 4
        if end + 4 < len(data):
            self.poolable = False
        return data[:end + 4]

    # --- httptools callbacks ----------------------------------------------------------------

    def on_headers_complete(self) -> None:
        parser = self.parser
        status = parser.get_status_code()
        self.status = status
        if 100 <= status < 200 and status != 101:
            # Interim response (100 Continue): forward it, the final one follows.
            self.head_done = True
            return
        self.head_done = self.final = True
        self.keep_alive = parser.should_keep_alive()
        ex = self.ex
        ex.status = status  # type: ignore[union-attr]
        ex.t_resp = self.state.loop.time()  # type: ignore[union-attr]
        if self.keep_alive and status != 101 and self.client.closes_after(ex):  # type: ignore[union-attr]
            # The client connection closes after this response: say so in its head.
            edit = ex.response_edit  # type: ignore[union-attr]
            ex.response_edit = mark_close if edit is None else lambda head: mark_close(edit(head))  # type: ignore[union-attr]
        if ex.head_request:  # type: ignore[union-attr]
            raise _HeadResponseEnd

    def on_message_complete(self) -> None:
        if self.final:
            self.done = True

    # --- endings ----------------------------------------------------------------------------

    def _finish(self, close_client: bool) -> None:
        ex, client = self.ex, self.client
        self.ex = self.client = None
        ex.conn = None  # type: ignore[union-attr]
        if not self.keep_alive:
            # The response tells the client the connection closes (Connection: close, or an
            # HTTP/1.0 answer). Responses pass as bytes, so that header cannot be rewritten as
            # HAProxy does: keep what the client was told, and close its side too.
            close_client = True
        if self.keep_alive and self.poolable and ex.complete and not close_client and not self.transport.is_closing():  # type: ignore[union-attr]
            self.reused = True
            # The client may have paused us with the last bytes it was sent: a parked
            # connection must read (to see the server close it), and the next exchange on it
            # must get its response.
            self.transport.resume_reading()
            # UpstreamPool.release, inline for its usual case (a list with room, not draining)
            fe = self.fe
            idle = fe.pool.idle.get(self.key)
            if idle is not None and len(idle) < MAX_IDLE_PER_SERVER and not self.state.draining:
                self.deadline = self.state.now + fe.pool.idle_timeout
                idle.append(self)
            else:
                fe.pool.release(self)
        else:
            self.deadline = 0.0
            self.transport.close()
        client.response_done(ex, close_client)  # type: ignore[union-attr]

    def _invalid(self) -> None:
        """The server broke HTTP: a 502 if the client has seen nothing yet, else cut it off."""
        ex, client = self.ex, self.client
        self.ex = self.client = None
        self.transport.abort()
        if ex is not None:
            ex.conn = None
            client.upstream_failed(ex, 502)  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        self.parser = None  # it holds our bound callbacks: freed now, not by the cyclic GC
        self.state.conns.discard(self)
        self.deadline = 0.0
        client, ex = self.client, self.ex
        if client is None:
            if not self.tunnel:
                self.fe.pool.forget(self)
            return
        if self.tunnel:
            self.client = None
            client.transport.close()
            return
        if self.head_done and not self.done and self.final and not _FRAMED.search(self.first_chunk.split(b"\r\n\r\n", 1)[0]):
            # No Content-Length, not chunked: the body is delimited by the close itself.
            self.keep_alive = False
            self._finish(close_client=True)
            return
        self.ex = self.client = None
        ex.conn = None  # type: ignore[union-attr]
        if not self.head_done and self.reused and not self.first_chunk and ex.retriable:  # type: ignore[union-attr]
            client.retry(ex)  # the server closed a parked connection as we reused it
        else:
            client.upstream_failed(ex, 502)  # type: ignore[arg-type]

    def on_deadline(self) -> None:
        if self.client is None:  # parked too long
            self.fe.pool.forget(self)
            self.transport.close()
            return
        ex, client = self.ex, self.client
        self.ex = self.client = None
        self.deadline = 0.0
        self.transport.abort()
        if self.tunnel:
            client.transport.close()
            return
        ex.conn = None  # type: ignore[union-attr]
        client.upstream_failed(ex, 504)  # type: ignore[arg-type]

    # --- flow control: a slow server pauses the client ---------------------------------------

    def pause_writing(self) -> None:
        if self.client is not None:
            self.client.pause_for_upstream()

    def resume_writing(self) -> None:
        if self.client is not None:
            self.client.resume_for_upstream()
