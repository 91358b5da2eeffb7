"""Built-in closed-loop HTTP/1.1 load generator (the fallback when wrk is not installed).

uvloop + ``asyncio.Protocol``: N connections, each sends one GET, waits for the whole
response, records the latency and sends the next. Keep-alive by default; with
``--close`` every request goes on a new connection (``Connection: close``).

Runs as a subprocess so it does not share a GIL or an event loop with the harness, and prints
one JSON object on stdout::

    python loadgen.py --url http://127.0.0.1:8080/ --connections 50 --duration 5

Self-contained (no package-relative imports) so it can run by file path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
from array import array
from urllib.parse import urlsplit

__all__ = ["run", "main"]

_HEAD_END = b"\r\n\r\n"


class _Stats:
    __slots__ = ("latencies", "requests", "bytes", "status_errors", "connect_errors",
                 "read_errors", "running", "connects", "live")

    def __init__(self) -> None:
        self.latencies = array("q")  # nanoseconds
        self.requests = 0
        self.bytes = 0
        self.status_errors = 0
        self.connect_errors = 0
        self.read_errors = 0
        self.connects = 0
        self.running = True
        self.live: set = set()  # open transports, closed when the run ends


class _Client(asyncio.Protocol):
    __slots__ = ("stats", "request", "keepalive", "transport", "buf", "t0", "need", "status",
                 "done", "closing")

    def __init__(self, stats: _Stats, request: bytes, keepalive: bool, done: asyncio.Future):
        self.stats = stats
        self.request = request
        self.keepalive = keepalive
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.t0 = 0
        self.need = -1  # total bytes of the current response, once the head is parsed
        self.status = 0
        self.done = done  # resolved when this connection ends
        self.closing = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.stats.connects += 1
        self.stats.live.add(transport)
        self._send()

    def _send(self) -> None:
        self.buf = b""
        self.need = -1
        self.t0 = time.perf_counter_ns()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        while True:
            if self.need < 0:
                end = buf.find(_HEAD_END)
                if end < 0:
                    self.buf = buf
                    return
                head = buf[:end]
                try:
                    self.status = int(head[9:12])
                except ValueError:
                    self.status = 0
                length = _content_length(head)
                if length < 0:  # no length: read to close (not expected from the backends)
                    length = 1 << 62
                self.need = end + 4 + length
            if len(buf) < self.need:
                self.buf = buf
                return
            rest = buf[self.need :]
            self._complete(self.need)
            if self.closing or self.transport is None:
                return
            if rest:  # an unsolicited extra response: should not happen in a closed loop
                self.stats.read_errors += 1
            buf = b""
            self._send()
            return

    def _complete(self, nbytes: int) -> None:
        st = self.stats
        if st.running:
            st.latencies.append(time.perf_counter_ns() - self.t0)
            st.requests += 1
            st.bytes += nbytes
            if not 200 <= self.status < 400:
                st.status_errors += 1
        if not st.running or not self.keepalive:
            self.closing = True
            self.transport.close()

    def connection_lost(self, exc) -> None:
        if not self.closing and self.stats.running:
            self.stats.read_errors += 1
        self.stats.live.discard(self.transport)
        self.transport = None
        if not self.done.done():
            self.done.set_result(None)


def _content_length(head: bytes) -> int:
    i = head.find(b"\r\nContent-Length:")
    if i < 0:
        i = head.lower().find(b"\r\ncontent-length:")
        if i < 0:
            return -1
    j = head.find(b"\r\n", i + 2)
    value = head[i + 17 : j if j >= 0 else len(head)]
    try:
        return int(value.strip())
    except ValueError:
        return -1


async def _worker(loop, stats: _Stats, host: str, port: int, request: bytes,
                  keepalive: bool) -> None:
    while stats.running:
        done = loop.create_future()
        try:
            transport, _ = await loop.create_connection(
                lambda: _Client(stats, request, keepalive, done), host, port)
        except OSError:
            if stats.running:
                stats.connect_errors += 1
                await asyncio.sleep(0.01)
            continue
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        await done


def _percentile(sorted_values, p: float) -> float:
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, int(round(p / 100.0 * len(sorted_values) + 0.5)) - 1))
    return float(sorted_values[k])


async def run(url: str, *, connections: int = 50, duration: float = 5.0,
              keepalive: bool = True, host_header: str | None = None) -> dict:
    """Drive ``url`` for ``duration`` seconds; a wrk-like summary dict (latencies in us)."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    hh = host_header or parts.netloc
    request = f"GET {path} HTTP/1.1\r\nHost: {hh}\r\n".encode("ascii")
    if not keepalive:
        request += b"Connection: close\r\n"
    request += b"\r\n"

    loop = asyncio.get_running_loop()
    stats = _Stats()
    t0 = time.perf_counter()
    tasks = [loop.create_task(_worker(loop, stats, host, port, request, keepalive))
             for _ in range(connections)]
    await asyncio.sleep(duration)
    stats.running = False
    elapsed = time.perf_counter() - t0
    for t in tasks:
        t.cancel()
    for tr in list(stats.live):
        tr.close()
    await asyncio.gather(*tasks, return_exceptions=True)

    lat = sorted(stats.latencies)
    us = 1000.0
    return {
        "tool": "builtin",
        "requests": stats.requests,
        "duration_s": elapsed,
        "requests_per_s": stats.requests / elapsed if elapsed > 0 else 0.0,
        "bytes": stats.bytes,
        "connects": stats.connects,
        "errors": {
            "connect": stats.connect_errors,
            "read": stats.read_errors,
            "write": 0,
            "timeout": 0,
            "status": stats.status_errors,
        },
        "latency_us": {
            "mean": (sum(lat) / len(lat) / us) if lat else 0.0,
            "max": (lat[-1] / us) if lat else 0.0,
            "p50": _percentile(lat, 50) / us,
            "p75": _percentile(lat, 75) / us,
            "p90": _percentile(lat, 90) / us,
            "p99": _percentile(lat, 99) / us,
            "p99.9": _percentile(lat, 99.9) / us,
        },
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="closed-loop HTTP/1.1 load generator")
    p.add_argument("--url", required=True)
    p.add_argument("--connections", "-c", type=int, default=50)
    p.add_argument("--duration", "-d", type=float, default=5.0)
    p.add_argument("--close", action="store_true", help="one request per connection")
    args = p.parse_args(argv)
    coro = run(args.url, connections=args.connections, duration=args.duration,
               keepalive=not args.close)
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        result = asyncio.run(coro)
    else:
        result = uvloop.run(coro)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
