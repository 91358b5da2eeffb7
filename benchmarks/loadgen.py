"""Built-in HTTP/1.1 load generator (the fallback when wrk is not installed; the open-loop mode).

uvloop + ``asyncio.Protocol``. Closed loop (default): N connections, each sends one GET, waits
for the whole response, records the latency and sends the next. Open loop (``--rate R``):
requests are due at a fixed rate whatever the server does; a request that finds no idle
connection waits in a queue, and its latency counts from when it was due, not from when it was
sent, so a stall shows in the percentiles instead of hiding (no coordinated omission).
Keep-alive by default; with ``--close`` every request goes on a new connection
(``Connection: close``); ``https://`` URLs use TLS without verifying the certificate.

Latencies go into an HdrHistogram when the ``hdrhistogram`` package is installed (the
``bench`` extra), else into an array that is sorted at the end.

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


PERCENTILES = (0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0)


class _Latencies:
    """Latency record in microseconds: HdrHistogram when available, else a plain array."""

    def __init__(self) -> None:
        try:
            from hdrh.histogram import HdrHistogram
        except ImportError:
            self.hdr = None
            self.values = array("q")
            self.record = self.values.append
        else:  # 1 us .. 100 s at 3 significant digits
            self.hdr = HdrHistogram(1, 100_000_000, 3)
            self.record = self._record_hdr
        self.kind = "hdrhistogram" if self.hdr is not None else "sorted-array"

    def _record_hdr(self, us: int) -> None:
        self.hdr.record_value(us if us > 0 else 1)

    def summary(self) -> tuple[dict, list]:
        """(named percentiles and mean/max, the [percentile, us] curve)."""
        if self.hdr is not None:
            h = self.hdr
            if h.get_total_count() == 0:
                return {}, []
            at = lambda p: float(h.get_value_at_percentile(p))  # noqa: E731
            mean, peak = h.get_mean_value(), float(h.get_max_value())
        else:
            lat = sorted(self.values)
            if not lat:
                return {}, []
            at = lambda p: _percentile(lat, p)  # noqa: E731
            mean, peak = sum(lat) / len(lat), float(lat[-1])
        named = {"mean": mean, "max": peak}
        for key, p in (("p50", 50), ("p75", 75), ("p90", 90), ("p99", 99), ("p99.9", 99.9),
                       ("p99.99", 99.99)):
            named[key] = at(p)
        return named, [[p, peak if p == 100.0 else at(p)] for p in PERCENTILES]


class _Stats:
    __slots__ = ("latencies", "requests", "bytes", "status_errors", "connect_errors",
                 "read_errors", "running", "connects", "live", "record", "idle", "backlog",
                 "dropped")

    def __init__(self) -> None:
        self.latencies = _Latencies()
        self.record = self.latencies.record  # microseconds
        self.idle: list = []  # open-loop: connections waiting for a due request
        self.backlog: list[int] = []  # open-loop: due times (ns) of requests not yet sent
        self.dropped = 0
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
                 "done", "closing", "open_loop")

    def __init__(self, stats: _Stats, request: bytes, keepalive: bool, done: asyncio.Future,
                 open_loop: bool = False):
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
        self.open_loop = open_loop

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.stats.connects += 1
        self.stats.live.add(transport)
        self._next()

    def _next(self) -> None:
        if not self.open_loop:
            self._send(time.perf_counter_ns())
        elif self.stats.backlog:
            self._send(self.stats.backlog.pop(0))
        else:
            self.stats.idle.append(self)

    def _send(self, due_ns: int) -> None:
        self.buf = b""
        self.need = -1
        self.t0 = due_ns
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
            self._next()
            return

    def _complete(self, nbytes: int) -> None:
        st = self.stats
        if st.running:
            st.record((time.perf_counter_ns() - self.t0) // 1000)
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
        if self in self.stats.idle:
            self.stats.idle.remove(self)
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
                  keepalive: bool, ssl_ctx=None, open_loop: bool = False) -> None:
    while stats.running:
        done = loop.create_future()
        try:
            transport, _ = await loop.create_connection(
                lambda: _Client(stats, request, keepalive, done, open_loop), host, port,
                ssl=ssl_ctx, server_hostname="" if ssl_ctx else None)
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


async def _pace(stats: _Stats, rate: float, max_backlog: int) -> None:
    """Open loop: make a request due every 1/rate s; hand it to an idle connection or queue it."""
    interval = int(1e9 / rate)
    due = time.perf_counter_ns()
    while stats.running:
        now = time.perf_counter_ns()
        while due <= now:  # catch up after a late wake-up: every due request counts
            if stats.idle:
                stats.idle.pop()._send(due)
            elif len(stats.backlog) < max_backlog:
                stats.backlog.append(due)
            else:
                stats.dropped += 1
            due += interval
        await asyncio.sleep(max(0.0, (due - time.perf_counter_ns()) / 1e9))


async def run(url: str, *, connections: int = 50, duration: float = 5.0,
              keepalive: bool = True, host_header: str | None = None,
              rate: float | None = None) -> dict:
    """Drive ``url`` for ``duration`` seconds; a wrk-like summary dict (latencies in us).

    With ``rate`` (requests/s) the load is open-loop: see the module docstring.
    """
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    ssl_ctx = None
    if parts.scheme == "https":
        import ssl

        ssl_ctx = ssl.create_default_context()
        ssl_ctx.check_hostname = False
        ssl_ctx.verify_mode = ssl.CERT_NONE
    port = parts.port or (443 if ssl_ctx else 80)
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
    open_loop = bool(rate)
    tasks = [loop.create_task(_worker(loop, stats, host, port, request, keepalive, ssl_ctx,
                                      open_loop))
             for _ in range(connections)]
    if rate:
        tasks.append(loop.create_task(_pace(stats, rate, max_backlog=int(rate * 10) + 1000)))
    await asyncio.sleep(duration)
    stats.running = False
    elapsed = time.perf_counter() - t0
    for t in tasks:
        t.cancel()
    for tr in list(stats.live):
        tr.close()
    await asyncio.gather(*tasks, return_exceptions=True)

    named, curve = stats.latencies.summary()
    return {
        "tool": "builtin",
        "mode": f"open-loop {rate:g}/s" if rate else "closed-loop",
        "rate": rate,
        "histogram": stats.latencies.kind,
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
            "dropped": stats.dropped,  # open loop: due requests beyond a 10 s backlog
        },
        "latency_us": named,
        "latency_curve_us": curve,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="HTTP/1.1 load generator (closed or open loop)")
    p.add_argument("--url", required=True)
    p.add_argument("--connections", "-c", type=int, default=50)
    p.add_argument("--duration", "-d", type=float, default=5.0)
    p.add_argument("--close", action="store_true", help="one request per connection")
    p.add_argument("--rate", type=float, default=None,
                   help="open loop: requests per second, latency from when each was due")
    args = p.parse_args(argv)
    coro = run(args.url, connections=args.connections, duration=args.duration,
               keepalive=not args.close, rate=args.rate)
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
