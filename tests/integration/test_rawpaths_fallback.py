"""Where the platform has no epoll (macOS, BSD) the engine still imports and serves every bind
with the loop's transports: the raw paths (engine/rawpaths.py) are simply absent."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.timeout(60)

# Run in a fresh interpreter whose select/os/socket modules lack what the raw paths need.
_SCRIPT = textwrap.dedent('''
    import select, os, socket
    for name in [n for n in dir(select) if n.startswith("EPOLL")] + ["epoll"]:
        delattr(select, name)
    del os.RWF_NOWAIT, socket.SOCK_NONBLOCK

    import asyncio
    import uvloop
    import virtserve
    from virtserve.engine import rawpaths

    async def backend(reader, writer):
        await reader.readuntil(b"\\r\\n\\r\\n")
        writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 5\\r\\n\\r\\nhello")
        await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(backend, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        config = {
            "listen": {
                "web": {"bind": "127.0.0.1:0", "mode": "http", "servers": [{"name": "b", "address": f"127.0.0.1:{port}"}]},
                "tcp": {"bind": "127.0.0.1:0", "mode": "tcp", "servers": [{"name": "b", "address": f"127.0.0.1:{port}"}]},
            }
        }
        async with virtserve.serve(config) as lb:
            for name in ("web", "tcp"):
                host, lport = lb.addresses[name][0]
                reader, writer = await asyncio.open_connection(host, lport)
                writer.write(b"GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
                answer = await asyncio.wait_for(reader.read(), 10)
                writer.close()
                print(name, answer.split(b"\\r\\n", 1)[0].decode(), answer.endswith(b"hello"))
        print("raw paths", rawpaths.rawio, rawpaths.rawrelay)
        server.close()

    uvloop.run(main())
''')


def test_without_epoll_every_bind_is_served_by_the_loop_transports():
    done = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=50)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "web HTTP/1.1 200 OK True" in lines
    assert "tcp HTTP/1.1 200 OK True" in lines
    assert "raw paths None None" in lines
