"""The ldirectord.cf example of the SUSE High Availability guide's load-balancing chapter, verbatim
but for the addresses (loopback ones): negotiate checks of test.html for "still alive", quiescent
servers kept at weight 0, and the fallback server once every real server has failed."""
import asyncio

import pytest
from aiohttp import web
from helpers import start_app
from checkhelpers import status_of, wait_for

import virtserve

pytestmark = pytest.mark.timeout(60)

GUIDE = """\
checktimeout=3
checkinterval=5
autoreload=yes
logfile="/var/log/ldirectord.log"
quiescent=yes
virtual={virtual}
      checktype=negotiate
      fallback={fallback} gate
      protocol=tcp
      real={real1} gate
      real={real2} gate
      receive="still alive"
      request="test.html"
      scheduler=wlc
      service=http
"""


class WebServer:
    """A real server with the guide's test.html, which the test can make say something else."""

    def __init__(self, name: str) -> None:
        self.name, self.page, self.port = name, "still alive", 0

    async def start(self) -> "WebServer":
        async def test_html(request):
            return web.Response(text=self.page)

        async def hello(request):
            return web.Response(text=self.name)

        app = web.Application()
        app.router.add_get("/test.html", test_html)
        app.router.add_route("*", "/{tail:.*}", hello)
        self.runner, self.port = await start_app(app)
        return self


async def _get(address) -> str:
    reader, writer = await asyncio.open_connection(*address)
    writer.write(b"GET / HTTP/1.0\r\n\r\n")
    async with asyncio.timeout(5):
        body = await reader.read(-1)
    writer.close()
    return body.split(b"\r\n\r\n", 1)[1].decode()


async def test_suse_guide_ldirectord_example(tmp_path):
    real1, real2, sorry = [await WebServer(n).start() for n in ("real1", "real2", "sorry")]
    import socket
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    vport = probe.getsockname()[1]
    probe.close()
    path = tmp_path / "ldirectord.cf"
    path.write_text(GUIDE.format(virtual=f"127.0.0.1:{vport}", fallback=f"127.0.0.1:{sorry.port}",
                                 real1=f"127.0.0.1:{real1.port}", real2=f"127.0.0.1:{real2.port}"))
    try:
        async with virtserve.serve(path) as lb:
            assert lb.config.autoreload is True
            one, two = f"127.0.0.1:{real1.port}", f"127.0.0.1:{real2.port}"
            await wait_for(lambda: all(status_of(lb, n)["check"] for n in (one, two)), 10)
            assert {await _get(lb.address) for _ in range(4)} == {"real1", "real2"}
            # checkinterval 5 + checktimeout 3, failurecount 1: detected within 8 s.
            real1.page = "gone fishing"
            await wait_for(lambda: status_of(lb, one)["status"] == "DOWN", 9)
            state = status_of(lb, one)
            assert state["weight"] == 0 and state["up"] is True  # quiescent: kept at weight 0
            assert state["check"]["reason"] == "Layer7 invalid response"
            assert {await _get(lb.address) for _ in range(4)} == {"real2"}
            real2.page = "gone fishing"
            await wait_for(lambda: status_of(lb, two)["status"] == "DOWN", 9)
            assert {await _get(lb.address) for _ in range(3)} == {"sorry"}
            real1.page = "still alive"  # one recovers: the fallback steps back
            await wait_for(lambda: status_of(lb, one)["status"] == "UP", 9)
            assert {await _get(lb.address) for _ in range(3)} == {"real1"}
    finally:
        for s in (real1, real2, sorry):
            await s.runner.cleanup()
