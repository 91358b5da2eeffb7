"""`balance url_param NAME check_post` end to end: real form POSTs through the proxy to aiohttp
backends that echo the body and name themselves. The pick waits for the body's first bytes (the
look-ahead), then the whole body reaches the server unchanged."""
from __future__ import annotations

import asyncio
import hashlib
import os

import aiohttp
import pytest
from helpers import topology

pytestmark = pytest.mark.timeout(60)


async def three(backends):
    return await backends("s1", "s2", "s3")


async def post(lb, body: bytes | object, path="/echo", ctype="application/x-www-form-urlencoded"):
    """POST with aiohttp: bytes go with a Content-Length, an async generator chunked."""
    async with aiohttp.ClientSession() as s:
        async with s.post(lb.url + path, data=body, headers={"Content-Type": ctype}) as r:
            return r.headers["X-Backend"], await r.read()


async def raw_post(port: int, head: bytes, pieces: list[bytes], pause: float = 0.05) -> tuple[bytes, bytes]:
    """The head, then the body in separate writes with pauses: the pick must wait for it.
    Returns the response head and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        for piece in pieces:
            await writer.drain()
            await asyncio.sleep(pause)
            writer.write(piece)
        async with asyncio.timeout(10):
            resp_head = await reader.readuntil(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in resp_head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:")))
            return resp_head, await reader.readexactly(length)
    finally:
        writer.close()


def backend_of(resp_head: bytes) -> str:
    return next(line.split(b":", 1)[1].strip().decode() for line in resp_head.split(b"\r\n")
                if line.lower().startswith(b"x-backend:"))


def form_head(port: int, length: int, extra: bytes = b"") -> bytes:
    return (b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: %d\r\n%b\r\n" % (port, length, extra))


async def test_param_in_the_body_sticks_as_in_the_query(backends, balancer):
    web = await three(backends)
    lb = await balancer(topology([b.port for b in web], scheduler="url_param",
                                 options={"param": "user", "check-post": True}))
    by_user = {}
    for i in range(12):
        body = b"a=1&user=u%d&z=2" % i
        name, echoed = await post(lb, body)
        assert echoed == body
        by_user[i] = name
        # The same key in the query string of a GET hashes the same way.
        async with aiohttp.ClientSession() as s, s.get(lb.url + f"/?user=u{i}") as r:
            assert await r.text() == name
    assert len(set(by_user.values())) >= 2
    for i in range(12):  # again: each user goes where it went
        assert (await post(lb, b"user=u%d" % i))[0] == by_user[i]


async def test_pick_waits_for_a_body_sent_after_the_head(backends, balancer):
    web = await three(backends)
    lb = await balancer(topology([b.port for b in web], scheduler="url_param",
                                 options={"param": "user", "check-post": True}))
    body = b"user=alice&note=" + b"x" * 40
    want, _ = await post(lb, body)
    for split in (1, 5, 11, len(body) - 1):
        head, echoed = await raw_post(lb.address[1], form_head(lb.address[1], len(body)), [body[:split], body[split:]])
        assert echoed == body
        assert backend_of(head) == want


async def test_expect_100_continue_gets_the_go_ahead_from_the_proxy(backends, balancer):
    """A client that waits for 100 Continue before its body: the proxy, which waits for the body
    before it picks a server, says go ahead itself (a second 100 from the server is allowed)."""
    web = await three(backends)
    lb = await balancer(topology([b.port for b in web], scheduler="url_param",
                                 options={"param": "user", "check-post": True}))
    body = b"user=carol"
    want, _ = await post(lb, body)
    reader, writer = await asyncio.open_connection("127.0.0.1", lb.address[1])
    try:
        writer.write(form_head(lb.address[1], len(body), b"Expect: 100-continue\r\n"))
        async with asyncio.timeout(5):
            assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(body)
            head = await reader.readuntil(b"\r\n\r\n")
            while head.startswith(b"HTTP/1.1 100"):
                head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            assert backend_of(head) == want
            assert await reader.readexactly(len(body)) == body
    finally:
        writer.close()


async def test_large_body_streams_unchanged_with_the_param_inside_the_look_ahead(backends, balancer):
    web = await three(backends)
    lb = await balancer(topology([b.port for b in web], scheduler="url_param",
                                 options={"param": "user", "check-post": 1024}))
    names = set()
    for i in range(4):
        body = b"user=big%d&blob=" % i + os.urandom(600_000).hex().encode()
        first, echoed = await post(lb, body)
        assert hashlib.sha256(echoed).digest() == hashlib.sha256(body).digest()
        again, _ = await post(lb, b"user=big%d" % i)
        assert again == first  # the key came from the first 1,024 bytes
        names.add(first)
    # Past the look-ahead the parameter is not seen: round robin over all three.
    late = b"blob=" + b"y" * 2000 + b"&user=late"
    got = [(await post(lb, late))[0] for _ in range(6)]
    assert set(got) == {"s1", "s2", "s3"}


async def test_falls_back_to_round_robin(backends, balancer):
    web = await three(backends)
    lb = await balancer(topology([b.port for b in web], scheduler="url_param",
                                 options={"param": "user", "check-post": True}))
    for body, ctype in ((b"a=1&b=2", "application/x-www-form-urlencoded"),  # no such parameter
                        (b'{"user": "u1"}', "application/json"),  # not a form: not looked into
                        (b"user=u1", "text/plain")):
        got = []
        for _ in range(6):
            name, echoed = await post(lb, body, ctype=ctype)
            assert echoed == body
            got.append(name)
        assert set(got) == {"s1", "s2", "s3"}, (body, got)


async def test_chunked_body_first_chunk(backends, balancer):
    web = await three(backends)
    lb = await balancer(topology([b.port for b in web], scheduler="url_param",
                                 options={"param": "user", "check-post": True}))

    async def chunks(user: bytes):
        yield b"user=" + user + b"&x=1"
        await asyncio.sleep(0.02)
        yield b"&more=" + b"z" * 5000

    seen = {}
    for user in (b"ann", b"bob", b"cyd", b"dan", b"eve", b"fay"):
        name, echoed = await post(lb, chunks(user))
        assert echoed == b"user=" + user + b"&x=1&more=" + b"z" * 5000
        assert (await post(lb, b"user=" + user))[0] == name
        seen[user] = name
    assert len(set(seen.values())) >= 2


async def test_without_check_post_the_body_is_not_looked_into(backends, balancer):
    web = await three(backends)
    lb = await balancer(topology([b.port for b in web], scheduler="url_param", options={"param": "user"}))
    got = [(await post(lb, b"user=same"))[0] for _ in range(6)]
    assert set(got) == {"s1", "s2", "s3"}
