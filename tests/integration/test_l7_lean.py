"""The lean client path (engine/l7/lean.py): a frontend that reads no request header forwards a
whole bodiless request as received, with X-Forwarded-* spliced in; anything else moves the
connection to the full path, which answers exactly as before."""
from __future__ import annotations

import asyncio

import pytest
from helpers import RawServer, topology

from virtserve.engine.l7.lean import LeanProxyProtocol

pytestmark = pytest.mark.timeout(60)

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def recording(delay: float = 0.0):
    """A keep-alive server that records each request head (and body) it reads, answering 200."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            seen.append(head + (await reader.readexactly(length) if length else b""))
            if delay:
                await asyncio.sleep(delay)
            writer.write(OK)
            await writer.drain()

    return handle, seen


async def _responses(reader: asyncio.StreamReader, count: int) -> list[bytes]:
    out = []
    async with asyncio.timeout(5):
        for _ in range(count):
            head = await reader.readuntil(b"\r\n\r\n")
            out.append(head + await reader.readexactly(2))
    return out


async def test_plain_request_forwarded_as_received_with_forwarded_headers_spliced(raw_server, balancer):
    handle, seen = recording()
    server = await raw_server(handle)
    lb = await balancer(topology([server.port], forwardfor=True))
    reader, writer = await asyncio.open_connection(*lb.address)
    head = b"GET /a?b=1 HTTP/1.1\r\nHost: t\r\nX-Dup: 1\r\nAccept: */*\r\nx-dup: 2\r\n\r\n"
    writer.write(head)
    (response,) = await _responses(reader, 1)
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert any(isinstance(c, LeanProxyProtocol) and c.lean for c in lb.engine.state.conns)
    writer.close()
    # Header order, duplicates and case as the client sent them; the proxy's own lines last.
    assert seen == [head[:-2] + b"x-forwarded-for: 127.0.0.1\r\nx-forwarded-proto: http\r\n\r\n"]


async def test_connection_moves_to_the_full_path_and_every_request_is_answered(raw_server, balancer):
    handle, seen = recording()
    server = await raw_server(handle)
    lb = await balancer(topology([server.port], forwardfor=True))
    reader, writer = await asyncio.open_connection(*lb.address)
    writer.write(b"GET /1 HTTP/1.1\r\nHost: t\r\n\r\n")
    await _responses(reader, 1)
    # A body and a client X-Forwarded-For: the full path from here on, for this connection.
    writer.write(b"POST /2 HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 10.0.0.1\r\nContent-Length: 3\r\n\r\nabc")
    await _responses(reader, 1)
    writer.write(b"GET /3 HTTP/1.1\r\nHost: t\r\nConnection: keep-alive\r\n\r\n")
    await _responses(reader, 1)
    (conn,) = [c for c in lb.engine.state.conns if isinstance(c, LeanProxyProtocol)]
    assert not conn.lean
    writer.close()
    assert [s.split(b" ", 2)[1] for s in seen] == [b"/1", b"/2", b"/3"]
    assert b"x-forwarded-for: 10.0.0.1, 127.0.0.1\r\n" in seen[1] and seen[1].endswith(b"\r\n\r\nabc")
    assert all(s.lower().count(b"x-forwarded-for") == 1 and b"connection" not in s.lower() for s in seen)


async def test_bytes_after_a_request_that_said_close_are_not_forwarded(raw_server, balancer):
    handle, seen = recording(delay=0.3)
    server = await raw_server(handle)
    lb = await balancer(topology([server.port]))
    reader, writer = await asyncio.open_connection(*lb.address)
    writer.write(b"GET /1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(0.05)  # the first request is on its way before these bytes come
    writer.write(b"GET /2 HTTP/1.1\r\nHost: t\r\n\r\n")
    async with asyncio.timeout(5):
        answer = await reader.read(-1)  # one response, then the proxy closes
    writer.close()
    assert answer.count(b"HTTP/1.1 ") == 1 and b"connection: close\r\n" in answer and answer.endswith(b"ok")
    assert [s.split(b" ", 2)[1] for s in seen] == [b"/1"]
    assert b"connection" not in seen[0].lower()  # hop-by-hop: not forwarded


@pytest.mark.parametrize("scheduler", ["uri", "hdr"])
async def test_a_scheduler_that_reads_the_request_keeps_the_full_path(raw_server, balancer, scheduler):
    handle, seen = recording()
    server = await raw_server(handle)
    lb = await balancer(topology([server.port], scheduler=scheduler, forwardfor=True,
                                 options={"header": "host"} if scheduler == "hdr" else None))
    reader, writer = await asyncio.open_connection(*lb.address)
    writer.write(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
    await _responses(reader, 1)
    assert not any(isinstance(c, LeanProxyProtocol) for c in lb.engine.state.conns)
    writer.close()
    assert seen == [b"GET /x HTTP/1.1\r\nHost: t\r\nx-forwarded-for: 127.0.0.1\r\nx-forwarded-proto: http\r\n\r\n"]
