"""Embedded start-up: from the `virtserve.serve()` call to the first request answered through it,
in a process that has already imported virtserve (what a test suite starting a balancer per test
pays). `python -m benchmarks.embedded_startup`; the harness's start-up table times a whole process."""
from __future__ import annotations

import asyncio
import statistics
import time

import uvloop

import virtserve


async def backend():
    async def handle(r, w):
        await r.readuntil(b"\r\n\r\n")
        w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await w.drain()
        w.close()
    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def main():
    srv = await backend()
    port = srv.sockets[0].getsockname()[1]
    cfg = {"listen": {"web": {"bind": "127.0.0.1:0", "mode": "http", "servers": [{"address": f"127.0.0.1:{port}"}]}}}
    samples = []
    for i in range(8):
        t0 = time.perf_counter()
        async with virtserve.serve(cfg) as lb:
            r, w = await asyncio.open_connection(*lb.address[:2])
            w.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            await r.readuntil(b"ok")
            t1 = time.perf_counter()
            w.close()
        samples.append((t1 - t0) * 1000)
    print("serve() to the first answered request, ms:", [round(s, 2) for s in samples],
          "- median after the first:", round(statistics.median(samples[1:]), 2))

if __name__ == "__main__":
    uvloop.run(main())
