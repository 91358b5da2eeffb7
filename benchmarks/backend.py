"""A fast, fixed-response HTTP/1.1 server to stand behind the proxies under test.

uvloop + ``asyncio.Protocol``, keep-alive, pipelining; every request gets the same
``200 OK`` with a body of ``--size`` bytes and a ``Content-Length``. It parses just enough
for wrk, HAProxy and nginx: the end of each head (``\\r\\n\\r\\n``), a ``Content-Length``
request body, ``Connection: close`` and HTTP/1.0 without keep-alive.

Run it as a subprocess; it prints its port on one line once it accepts connections::

    python -m virtserve.benchmarks.backend --port 0 --size 100

This module is self-contained (no package-relative imports) so the harness can also run it
by file path, without importing the rest of ``virtserve``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys

__all__ = ["BackendProtocol", "build_response", "serve", "main"]

_HEAD_END = b"\r\n\r\n"
_MAX_HEAD = 64 * 1024


def build_response(size: int, *, name: str | None = None, close: bool = False) -> bytes:
    """The complete response (head and body) sent for every request."""
    body = (b"x" * (size - 1) + b"\n") if size > 0 else b""
    head = [b"HTTP/1.1 200 OK", b"Content-Type: text/plain", b"Content-Length: %d" % size]
    if name:
        head.append(b"X-Backend: " + name.encode("ascii"))
    if close:
        head.append(b"Connection: close")
    return b"\r\n".join(head) + _HEAD_END + body


_BAD_REQUEST = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
)


class BackendProtocol(asyncio.Protocol):
    """One client connection: count complete request heads, answer each with the fixed reply."""

    __slots__ = ("transport", "buf", "skip", "response", "response_close")

    def __init__(self, response: bytes, response_close: bytes) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.skip = 0  # request-body bytes still to discard
        self.response = response
        self.response_close = response_close

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def data_received(self, data: bytes) -> None:
        if self.skip:
            if len(data) <= self.skip:
                self.skip -= len(data)
                return
            data = data[self.skip :]
            self.skip = 0
        buf = self.buf + data if self.buf else data
        pos = 0
        answered = 0
        n = len(buf)
        while pos < n:
            end = buf.find(_HEAD_END, pos)
            if end < 0:
                break
            head = buf[pos:end]
            pos = end + 4
            # Fast path: a bare GET from wrk or a proxy carries neither header.
            if b"ontent-" in head or b"onnection" in head or b"HTTP/1.0" in head:
                length, close, ok = _inspect(head)
                if not ok:
                    self._flush(answered)
                    self.transport.write(_BAD_REQUEST)  # type: ignore[union-attr]
                    self.transport.close()  # type: ignore[union-attr]
                    self.buf = b""
                    return
                if length:
                    if pos + length > n:
                        self.skip = pos + length - n
                        pos = n
                    else:
                        pos += length
                if close:
                    self._flush(answered)
                    self.transport.write(self.response_close)  # type: ignore[union-attr]
                    self.transport.close()  # type: ignore[union-attr]
                    self.buf = b""
                    return
            answered += 1
        self._flush(answered)
        self.buf = buf[pos:] if pos < n else b""
        if len(self.buf) > _MAX_HEAD:
            self.transport.write(_BAD_REQUEST)  # type: ignore[union-attr]
            self.transport.close()  # type: ignore[union-attr]
            self.buf = b""

    def _flush(self, answered: int) -> None:
        if answered == 1:
            self.transport.write(self.response)  # type: ignore[union-attr]
        elif answered:
            self.transport.write(self.response * answered)  # type: ignore[union-attr]

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.buf = b""


def _inspect(head: bytes) -> tuple[int, bool, bool]:
    """(body length, close after reply, valid) for a head that mentions the interesting headers."""
    lines = head.split(b"\r\n")
    request_line = lines[0]
    http10 = request_line.endswith(b"HTTP/1.0")
    close = http10
    length = 0
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        name = name.strip().lower()
        if name == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                return 0, True, False
            if length < 0:
                return 0, True, False
        elif name == b"transfer-encoding":
            return 0, True, False  # chunked request bodies are not supported here
        elif name == b"connection":
            tokens = {t.strip() for t in value.lower().split(b",")}
            if b"close" in tokens:
                close = True
            elif http10 and b"keep-alive" in tokens:
                close = False
    return length, close, True


async def serve(host: str, port: int, size: int, name: str | None = None, backlog: int = 4096):
    """Start the server on the running loop; returns the ``asyncio.Server``."""
    loop = asyncio.get_running_loop()
    response = build_response(size, name=name)
    response_close = build_response(size, name=name, close=True)
    return await loop.create_server(
        lambda: BackendProtocol(response, response_close),
        host,
        port,
        backlog=backlog,
        reuse_address=True,
    )


async def _amain(args: argparse.Namespace) -> None:
    server = await serve(args.host, args.port, args.size, args.name)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    await stop
    server.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="fixed-response HTTP/1.1 benchmark backend")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on stdout)")
    p.add_argument("--size", type=int, default=100, help="response body size in bytes")
    p.add_argument("--name", default=None, help="sent back as X-Backend when set")
    args = p.parse_args(argv)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a hard dependency of virtserve
        asyncio.run(_amain(args))
    else:
        uvloop.run(_amain(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
