"""The haproxy.cfg example of the SUSE High Availability guide's load-balancing chapter
("Configuring load balancing with HAProxy"), verbatim but for the addresses (loopback ones):
round robin between web1-srv and web2-srv, the LB cookie inserted and honoured, X-Forwarded-For
and X-Forwarded-Proto added, the stats page in-band at /stats behind haproxy:password with the
version hidden, option httpclose, and a server failing its /robots.txt check taken out."""
import asyncio
import base64
import json
import subprocess
import sys

import pytest
from aiohttp import web
from helpers import start_app
from tlshelpers import free_port
from checkhelpers import status_of, wait_for

import virtserve
from virtserve.engine.admin.runtime import VERSION

pytestmark = pytest.mark.timeout(60)

# As the guide prints it (callout marks left out; its tab after `stats auth` and `balance` kept).
GUIDE = """\
global
  maxconn 256
  daemon

defaults
  log     global
  mode    http
  option  httplog
  option  dontlognull
  retries 3
  option redispatch
  maxconn 2000
  timeout connect   5000
  timeout client    50s
  timeout server    50000

frontend LB
  bind {vip}:80
  reqadd X-Forwarded-Proto:\\ http
  default_backend LB

backend LB
  mode http
  stats enable
  stats hide-version
  stats uri /stats
  stats realm Haproxy\\ Statistics
  stats auth haproxy:password\t
  balance roundrobin\t
  option  httpclose
  option forwardfor
  cookie LB insert
  option httpchk GET /robots.txt HTTP/1.0
  server web1-srv {web1}:80 cookie web1-srv check
  server web2-srv {web2}:80 cookie web2-srv check
"""


class WebServer:
    """A web server that names itself, shows the headers it got at /headers, and serves
    /robots.txt while `healthy`."""

    def __init__(self, name: str) -> None:
        self.name, self.healthy, self.port = name, True, 0
        self.paths: list[str] = []

    async def start(self) -> "WebServer":
        async def robots(request):
            return web.Response(text="User-agent: *\n", status=200 if self.healthy else 503)

        async def headers(request):
            return web.json_response({k: request.headers.getall(k) for k in request.headers})

        async def hello(request):
            self.paths.append(request.path)
            return web.Response(text=self.name)

        app = web.Application()
        app.router.add_get("/robots.txt", robots)
        app.router.add_get("/headers", headers)
        app.router.add_route("*", "/{tail:.*}", hello)
        self.runner, self.port = await start_app(app)
        return self


def _guide(web1: WebServer, web2: WebServer, port: int) -> str:
    """The guide's text with its addresses made loopback ones (ports included)."""
    text = GUIDE.format(vip="127.0.0.1", web1="127.0.0.1", web2="127.0.0.1")
    text = text.replace("127.0.0.1:80\n  reqadd", f"127.0.0.1:{port}\n  reqadd")
    text = text.replace("web1-srv 127.0.0.1:80", f"web1-srv 127.0.0.1:{web1.port}")
    return text.replace("web2-srv 127.0.0.1:80", f"web2-srv 127.0.0.1:{web2.port}")


async def _request(address, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, list[str]], bytes]:
    """One HTTP/1.1 request; reads to the end of the stream, which only comes if the proxy
    closes the connection after the response (option httpclose)."""
    reader, writer = await asyncio.open_connection(*address)
    lines = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    writer.write(f"GET {path} HTTP/1.1\r\nHost: lb.example\r\n{lines}\r\n".encode())
    async with asyncio.timeout(5):
        raw = await reader.read(-1)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    got: dict[str, list[str]] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        got.setdefault(name.strip().lower(), []).append(value.strip())
    return int(status_line.split()[1]), got, body


async def test_suse_guide_haproxy_example(tmp_path):
    web1, web2 = [await WebServer(n).start() for n in ("web1", "web2")]
    path = tmp_path / "haproxy.cfg"
    path.write_text(_guide(web1, web2, free_port()))
    try:
        async with virtserve.serve(path) as lb:
            await wait_for(lambda: all(status_of(lb, n)["check"] for n in ("web1-srv", "web2-srv")), 10)

            # Round robin, each answer inserting the cookie of the server that gave it; the
            # connection closed after each response (option httpclose).
            seen = []
            for _ in range(4):
                status, headers, body = await _request(lb.address, "/")
                assert status == 200
                assert headers["connection"] == ["close"]
                seen.append(body.decode())
                assert headers["set-cookie"][0].startswith(f"LB={body.decode()}-srv")
            assert seen in (["web1", "web2"] * 2, ["web2", "web1"] * 2)

            # The cookie is honoured: always the server it names.
            for _ in range(3):
                status, headers, body = await _request(lb.address, "/", {"Cookie": "LB=web2-srv"})
                assert (status, body) == (200, b"web2")
                assert "set-cookie" not in headers  # it already has the right one

            # X-Forwarded-For (option forwardfor) and X-Forwarded-Proto (reqadd) reach the server.
            status, _, body = await _request(lb.address, "/headers", {"Cookie": "LB=web1-srv"})
            seen_headers = {k.lower(): v for k, v in json.loads(body).items()}
            assert seen_headers["x-forwarded-for"] == ["127.0.0.1"]
            assert seen_headers["x-forwarded-proto"] == ["http"]  # once: forwardfor adds only XFF then
            assert seen_headers["connection"] == ["close"]  # httpclose: the server side closes too

            # The stats page, in-band on the frontend's port, behind basic auth.
            status, headers, body = await _request(lb.address, "/stats")
            assert status == 401
            assert headers["www-authenticate"] == ['Basic realm="Haproxy Statistics"']
            bad = base64.b64encode(b"haproxy:wrong").decode()
            status, _, _ = await _request(lb.address, "/stats", {"Authorization": f"Basic {bad}"})
            assert status == 401
            good = base64.b64encode(b"haproxy:password").decode()
            status, headers, body = await _request(lb.address, "/stats", {"Authorization": f"Basic {good}"})
            page = body.decode()
            assert status == 200 and headers["content-type"][0].startswith("text/html")
            assert "web1-srv" in page and "web2-srv" in page and "LB (backend)" in page
            assert f"version {VERSION}" not in page  # stats hide-version
            status, _, body = await _request(lb.address, "/stats;csv", {"Authorization": f"Basic {good}"})
            assert status == 200 and body.startswith(b"# pxname,svname,")
            assert not [p for p in web1.paths + web2.paths if p.startswith("/stats")]  # answered by the proxy

            # web1 starts failing its check: taken out, every request goes to web2.
            web1.healthy = False
            await wait_for(lambda: status_of(lb, "web1-srv")["status"] == "DOWN", 15)
            bodies = {(await _request(lb.address, "/"))[2] for _ in range(4)}
            assert bodies == {b"web2"}
            # Even a client holding web1's cookie (option redispatch): served by web2.
            status, headers, body = await _request(lb.address, "/", {"Cookie": "LB=web1-srv"})
            assert (status, body) == (200, b"web2")
            assert headers["set-cookie"][0].startswith("LB=web2-srv")
    finally:
        for s in (web1, web2):
            await s.runner.cleanup()


def test_check_accepts_the_guide_file_and_lists_its_notices(tmp_path):
    path = tmp_path / "haproxy.cfg"
    path.write_text(GUIDE.format(vip="127.0.0.1", web1="127.0.0.2", web2="127.0.0.3"))
    result = subprocess.run([sys.executable, "-m", "virtserve", "check", str(path)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    assert "1 frontend(s) on 1 bind(s), 1 backend(s), 2 server(s)" in out
    assert f"{path}:3: notice: global 'daemon'" in out
    assert f"{path}:19: notice: reqadd is HAProxy's legacy form" in out
    assert "add-header X-Forwarded-Proto http" in out
