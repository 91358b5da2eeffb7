"""Helpers for the L4 (mode tcp) end-to-end tests: raw servers that name themselves or echo,
ports that refuse or hang, held client connections, and a bounded poll."""
from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from typing import Any, Callable, Iterator

from helpers import RawHandler

from virtserve.api import Balancer


def naming(name: str) -> RawHandler:
    """A handler that sends `NAME\\n` on connect, then echoes until the client's EOF."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(name.encode() + b"\n")
        await writer.drain()
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()

    return handle


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(262144):
        writer.write(data)
        await writer.drain()


def closed_port() -> int:
    """A loopback port nobody listens on: connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def hanging_port() -> Iterator[int]:
    """A loopback port where connect() hangs: a listener with backlog 0 that never accepts,
    its accept queue filled by a few connections. Linux drops further SYNs while the queue
    is full (tcp_abort_on_overflow=0), so a new connect neither succeeds nor fails."""
    listener = socket.socket()
    fillers = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(3):
            s = socket.socket()
            s.setblocking(False)
            fillers.append(s)
            with contextlib.suppress(BlockingIOError):
                s.connect(("127.0.0.1", port))
        time.sleep(0.05)  # let the handshakes land in the accept queue
        yield port
    finally:
        for s in fillers:
            s.close()
        listener.close()


async def wait_for(pred: Callable[[], Any], timeout: float = 5.0, step: float = 0.02) -> Any:
    """Poll pred() until it is truthy; fail the test after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not (value := pred()):
            await asyncio.sleep(step)
        return value


async def wait_stalled(counter: Callable[[], int], quiet: float = 0.4, timeout: float = 10.0,
                       limit: int = 64 << 20) -> int:
    """Wait until counter() (bytes a peer managed to send) stops growing for `quiet` seconds;
    return its value. Past `limit` bytes nothing is holding it back: fail at once."""
    async with asyncio.timeout(timeout):
        last, since = counter(), time.monotonic()
        while time.monotonic() - since < quiet:
            await asyncio.sleep(0.05)
            now = counter()
            assert now <= limit, f"{now} bytes sent and still going: no backpressure"
            if now != last:
                last, since = now, time.monotonic()
        return last


class Held:
    """A client connection through the balancer to a naming() server, held open."""

    def __init__(self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.name = name
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        self.writer.close()


async def hold(lb: Balancer, local_ip: str | None = None, timeout: float = 5.0) -> Held:
    """Open a connection (from `local_ip` if given) and read the name of the server it reached."""
    host, port = lb.address
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(
            host, port, local_addr=(local_ip, 0) if local_ip else None)
        try:
            line = await reader.readline()
        except BaseException:
            writer.close()
            raise
    assert line.endswith(b"\n"), f"connection closed before the server named itself: {line!r}"
    return Held(line.decode().strip(), reader, writer)


async def hold_many(lb: Balancer, n: int, local_ip: str | None = None) -> list[Held]:
    """Open n connections at once and keep them all open."""
    results = await asyncio.gather(*(hold(lb, local_ip) for _ in range(n)), return_exceptions=True)
    held = [r for r in results if isinstance(r, Held)]
    errors = [r for r in results if not isinstance(r, Held)]
    if errors:
        for h in held:
            h.close()
        raise errors[0]
    return held


def landed(held: list[Held]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for h in held:
        counts[h.name] = counts.get(h.name, 0) + 1
    return counts


def active(lb: Balancer) -> dict[str, int]:
    return {s["name"]: s["active"] for s in lb.servers()}


def relay_conns(lb: Balancer) -> list[Any]:
    """The balancer's live client-side protocols (TcpClientProtocol in mode tcp)."""
    return list(lb.engine.state.conns)


# What the proxy holds per connection, for either relay: the transport relay (relay.py,
# write buffers with a high-water mark) or the raw one (rawrelay.py, at most one read per
# direction, and a side is not read while the other holds bytes).

def held_toward_client(conn: Any) -> int:
    if hasattr(conn, "to_client"):
        return len(conn.to_client) if conn.to_client is not None else 0
    return conn.transport.get_write_buffer_size()


def held_toward_server(conn: Any) -> int:
    if hasattr(conn, "to_server"):
        return len(conn.to_server) if conn.to_server is not None else 0
    return conn.peer.transport.get_write_buffer_size()


def hold_limit(conn: Any) -> int:
    """The most a direction may hold (plus one read of slack the assertions allow)."""
    if hasattr(conn, "to_client"):
        from virtserve.engine.reactor import BUFSIZE

        return BUFSIZE
    return conn.transport.get_write_buffer_limits()[1]


def reading_server(conn: Any) -> bool:
    if hasattr(conn, "to_client"):
        return conn.to_client is None
    return conn.peer.transport.is_reading()


def reading_client(conn: Any) -> bool:
    if hasattr(conn, "to_server"):
        return conn.to_server is None
    return conn.transport.is_reading()
