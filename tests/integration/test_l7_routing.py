"""Routing (use_backend with ACLs) and request rules (header edits, redirects) end to end: TOML
configs, the real proxy, aiohttp backends, and raw, aiohttp and curl clients."""
from __future__ import annotations

import asyncio
import contextlib
import json
import shutil

import aiohttp
import pytest

from rawhttp import RawClient, request
from virtserve.engine.admin import view
from virtserve.engine.config import native

pytestmark = pytest.mark.timeout(30)


def _config(ports: dict[str, int], frontend: str) -> str:
    """A frontend `web` (default backend app) with the given extra TOML lines, and one backend
    per entry of ports, each with one server."""
    text = f'[frontend.web]\nbind = "127.0.0.1:0"\nbackend = "app"\n{frontend}\n'
    for name, port in ports.items():
        text += f'[backend.{name}]\nservers = [{{ name = "{name}1", address = "127.0.0.1:{port}" }}]\n'
    return text


@pytest.fixture
async def three(backends):
    """Backends app, api and static, answering with their names."""
    app, api, static = await backends("app", "api", "static")
    return {"app": app.port, "api": api.port, "static": static.port}


async def _lb(balancer, ports: dict[str, int], frontend: str):
    return await balancer(native.parse(_config(ports, frontend), source="routing.toml"))


@contextlib.asynccontextmanager
async def _client(lb, **kw):
    client = await RawClient.connect(*lb.address, **kw)
    try:
        yield client
    finally:
        await client.close()


async def _get(client: RawClient, path: str, **kw) -> tuple[int, str]:
    await client.send(request("GET", path, **kw))
    r = await client.response()
    return r.status, r.body.decode()


ROUTES = '''
acl = { is_api = "path_beg /api /v1", is_static = ["path_end -i .css .js", "path_beg /static/"] }
routes = [
  { backend = "api", if = "is_api" },
  { backend = "static", if = "is_static" },
]
'''


async def test_routes_by_path_first_match_else_default(three, balancer):
    lb = await _lb(balancer, three, ROUTES)
    async with aiohttp.ClientSession() as s:
        for path, name in [("/", "app"), ("/api/users", "api"), ("/v1", "api"), ("/apix", "api"),
                           ("/x/site.CSS", "static"), ("/static/a.png", "static"), ("/static", "app"),
                           ("/api/site.css", "api"), ("/index.html?f=a.js", "app")]:
            async with s.get(lb.url + path) as r:
                assert (path, await r.text()) == (path, name)
    assert view.backend_counters(lb.engine.backends["api"]).requests == 4  # counted where they went
    assert view.backend_counters(lb.engine.backends["app"]).requests == 3


async def test_keepalive_requests_alternate_backends_on_one_connection(three, balancer):
    lb = await _lb(balancer, three, ROUTES)
    async with _client(lb) as client:
        for i in range(6):
            path, name = ("/api/x", "api") if i % 2 else ("/", "app")
            assert await _get(client, path) == (200, name)
    # Server connections are pooled per server: one each served its three requests.
    for name in ("app", "api"):
        server = lb.engine.backends[name].servers[0]
        assert server.total == 3
        assert lb.engine.pool.idle_count(server) == 1


async def test_pipelined_requests_go_to_their_backends_in_order(three, balancer):
    lb = await _lb(balancer, three, ROUTES)
    paths = ["/api/1", "/", "/a.js", "/api/2", "/", "/static/x"]
    async with _client(lb) as client:
        await client.send(b"".join(request("GET", p) for p in paths))
        got = [(await client.response()).body.decode() for _ in paths]
    assert got == ["api", "app", "static", "api", "app", "static"]


async def test_routes_by_host_case_insensitive_and_domain(three, balancer):
    lb = await _lb(balancer, three, '''
acl = { api_host = "hdr(host) -i api.example.com", static_dom = "hdr_dom(host) -i static.example.com" }
routes = [{ backend = "api", if = "api_host" }, { backend = "static", if = "static_dom" }]
''')
    async with _client(lb) as client:
        assert await _get(client, "/", host="API.Example.COM") == (200, "api")
        assert await _get(client, "/", host="api.example.com:8080") == (200, "app")  # hdr: exact
        assert await _get(client, "/", host="static.example.com:8080") == (200, "static")  # dom: port delimited
        assert await _get(client, "/", host="cdn.static.example.com") == (200, "static")
        assert await _get(client, "/", host="notstatic.example.com") == (200, "app")
        assert await _get(client, "/", host="other.test") == (200, "app")


async def test_negation_or_anonymous_and_unless(three, balancer):
    lb = await _lb(balancer, three, '''
acl = { is_api = "path_beg /api", is_get = "method GET" }
routes = [
  { backend = "api", if = "is_api !is_get || { hdr(x-canary) -i yes }" },
  { backend = "static", unless = "{ method GET POST }" },
]
''')
    async with _client(lb) as client:
        assert await _get(client, "/api/x") == (200, "app")  # a GET: !is_get fails
        await client.send(request("POST", "/api/x", body=b"{}"))
        assert (await client.response()).body == b"api"
        assert await _get(client, "/", headers={"X-Canary": "YES"}) == (200, "api")
        assert await _get(client, "/", headers={"X-Canary": "no, yes"}) == (200, "api")  # each value
        assert await _get(client, "/", headers={"X-Canary": "no"}) == (200, "app")
        assert await _get(client, "http://h/x") == (200, "app")  # absolute-form: the path is /x
        await client.send(request("DELETE", "/x"))
        assert (await client.response()).body == b"static"  # unless: neither GET nor POST


async def test_route_on_source_address(three, balancer):
    lb = await _lb(balancer, three, 'routes = [{ backend = "api", if = "{ src 127.0.0.2 10.0.0.0/8 }" }]')
    host, port = lb.address
    for source, name in [("127.0.0.2", "api"), ("127.0.0.3", "app")]:
        client = await RawClient.connect(host, port, local_addr=(source, 0))
        try:
            assert await _get(client, "/") == (200, name)
        finally:
            await client.close()


async def _seen_headers(client: RawClient, path: str = "/headers", **kw) -> tuple[str, dict[str, list[str]]]:
    await client.send(request("GET", path, **kw))
    r = await client.response()
    assert r.status == 200, r
    data = json.loads(r.body)
    seen: dict[str, list[str]] = {}
    for k, v in data["headers"]:
        seen.setdefault(k.lower(), []).append(v)
    return data["backend"], seen


async def test_header_rules_reach_the_backend(three, balancer):
    lb = await _lb(balancer, three, '''
acl = { from_canary = "hdr(x-env) -i canary" }
rules = [
  { add-header = ["X-Via", "virtserve"] },
  { add-header = ["X-Via", "second"] },
  { set-header = ["X-Env", "prod"], unless = "from_canary" },
  { del-header = "X-Debug" },
  { set-header = ["X-Saw-Canary", "1"], if = "from_canary" },
  { set-header = ["Host", "api.internal"], if = "{ path_beg /headers }" },
]
routes = [{ backend = "api", if = "{ hdr(host) api.internal }" }]
''')
    async with _client(lb) as client:
        backend, seen = await _seen_headers(client, headers=[("X-Env", "a"), ("X-Env", "b"), ("X-Debug", "1"),
                                                           ("X-Debug", "2"), ("X-Kept", "k")])
        assert backend == "api"  # the route saw the Host the rules set
        assert seen["x-via"] == ["virtserve", "second"]
        assert seen["x-env"] == ["prod"]  # every earlier one replaced
        assert "x-debug" not in seen
        assert seen["x-kept"] == ["k"]
        assert seen["host"] == ["api.internal"]
        assert "x-saw-canary" not in seen
        backend, seen = await _seen_headers(client, headers=[("X-Env", "Canary")])
        assert seen["x-env"] == ["Canary"] and seen["x-saw-canary"] == ["1"]


async def test_del_header_x_forwarded_for_with_forwardfor(three, balancer):
    lb = await _lb(balancer, three, 'forwardfor = true\nrules = [{ del-header = "X-Forwarded-For" }]')
    async with _client(lb) as client:
        _, seen = await _seen_headers(client, headers=[("X-Forwarded-For", "203.0.113.9")])
    assert seen["x-forwarded-for"] == ["127.0.0.1"]  # the client's claim dropped, ours added


REDIRECTS = '''
rules = [
  { redirect = { location = "https://elsewhere.example/moved", code = 301 }, if = "{ path /old }" },
  { redirect = { prefix = "https://new.example", code = 308 }, if = "{ path_beg /p/ }" },
  { redirect = { prefix = "/", drop-query = true, append-slash = true }, if = "{ path_beg /dir }" },
  { redirect = { scheme = "https" }, if = "{ hdr(host) -i secure.example }" },
  { add-header = ["X-After", "redirects"] },
]
'''


async def test_redirects_with_aiohttp(three, balancer):
    lb = await _lb(balancer, three, REDIRECTS)
    async with aiohttp.ClientSession() as s:
        cases = [
            ("/old", {}, 301, "https://elsewhere.example/moved"),
            ("/p/a?x=1", {}, 308, "https://new.example/p/a?x=1"),
            ("/dir?q=1", {}, 302, "/dir/"),
            ("/a/b?c", {"Host": "SECURE.example"}, 302, "https://SECURE.example/a/b?c"),
        ]
        for path, headers, code, location in cases:
            async with s.get(lb.url + path, headers=headers, allow_redirects=False) as r:
                assert (r.status, r.headers["Location"]) == (code, location)
                assert r.headers["Content-Length"] == "0"
                assert ("Cache-Control" in r.headers) == (code == 302)
        async with s.get(lb.url + "/headers", allow_redirects=False) as r:
            assert r.status == 200
            assert dict((await r.json())["headers"])["X-After"] == "redirects"
    assert three["app"] and view.backend_counters(lb.engine.backends["app"]).requests == 1  # redirects asked no server


async def test_redirect_keeps_the_connection_unless_asked_to_close(three, balancer):
    lb = await _lb(balancer, three, REDIRECTS)
    async with _client(lb) as client:
        await client.send(request("GET", "/old"))
        r = await client.response()
        assert r.status == 301 and r.header("connection") is None
        assert await _get(client, "/") == (200, "app")  # same connection
        await client.send(request("GET", "/old", headers={"Connection": "close"}))
        r = await client.response()
        assert r.status == 301 and r.header("connection") == "close"
        assert await client.closed()
    async with _client(lb) as client:  # HTTP/1.0 without keep-alive: answered, then closed
        await client.send(b"GET /old HTTP/1.0\r\n\r\n")
        r = await client.response()
        assert r.status == 301 and r.header("connection") == "close"
        assert await client.closed()


async def test_many_pipelined_redirects_then_a_proxied_request(three, balancer):
    lb = await _lb(balancer, three, REDIRECTS)
    client = await RawClient.connect(*lb.address)
    n = 2000  # more than the interpreter's recursion limit: answered in a loop
    try:
        await client.send(request("GET", "/old") * n + request("GET", "/") + request("GET", "/old"))
        for _ in range(n):
            assert (await client.response()).status == 301
        r = await client.response()
        assert (r.status, r.body) == (200, b"app")
        assert (await client.response()).status == 301
    finally:
        await client.close()


async def test_scheme_redirect_without_host_is_a_bad_request(three, balancer):
    lb = await _lb(balancer, three, 'rules = [{ redirect = { scheme = "https" } }]')
    async with _client(lb) as client:
        await client.send(b"GET / HTTP/1.0\r\n\r\n")
        assert (await client.response()).status == 400


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_redirect_seen_by_curl(three, balancer):
    lb = await _lb(balancer, three, REDIRECTS)
    proc = await asyncio.create_subprocess_exec(
        "curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "-H", "Host: secure.example",
        lb.url + "/path?q=1", stdout=asyncio.subprocess.PIPE)
    async with asyncio.timeout(10):
        out, _ = await proc.communicate()
    assert out.decode() == "302 https://secure.example/path?q=1"


async def test_reload_changes_routes_for_open_keepalive_connections(three, balancer):
    lb = await _lb(balancer, three, ROUTES)
    async with _client(lb) as client:
        assert await _get(client, "/api/x") == (200, "api")
        await lb.reload(native.parse(_config(three, 'routes = [{ backend = "static", if = "{ path_beg /api }" }]')))
        assert await _get(client, "/api/x") == (200, "static")
        assert await _get(client, "/") == (200, "app")


async def test_tcp_frontend_routes_on_source_address(three, balancer):
    text = f'''
[frontend.t]
mode = "tcp"
bind = "127.0.0.1:0"
backend = "app"
routes = [{{ backend = "api", if = "{{ src 127.0.0.2 }}" }}]
[backend.app]
mode = "tcp"
servers = [{{ address = "127.0.0.1:{three["app"]}" }}]
[backend.api]
mode = "tcp"
servers = [{{ address = "127.0.0.1:{three["api"]}" }}]
'''
    lb = await balancer(native.parse(text, source="tcp.toml"))
    host, port = lb.address
    for source, name in [("127.0.0.2", "api"), ("127.0.0.3", "app"), ("127.0.0.2", "api")]:
        client = await RawClient.connect(host, port, local_addr=(source, 0))
        try:
            assert await _get(client, "/") == (200, name)
        finally:
            await client.close()
    await asyncio.sleep(0.05)  # the relay accounts for a connection when it ends
    assert lb.engine.backends["api"].servers[0].total == 2



async def test_routed_requests_end_on_their_backend_with_a_load_counting_scheduler(three, balancer):
    """A routed request's end is told to the scheduler of the backend that picked its server,
    not to the frontend's default backend: with lc (IPVS least connection), one request at a time always finds
    every server idle again, so the first server takes them all (as the counts say)."""
    port = three["api"]
    text = _config(three, ROUTES).replace(
        f'[backend.api]\nservers = [{{ name = "api1", address = "127.0.0.1:{port}" }}]\n',
        f'[backend.api]\nscheduler = "lc"\nservers = [{{ name = "api1", address = "127.0.0.1:{port}" }},'
        f' {{ name = "api2", address = "127.0.0.1:{port}" }}]\n')
    assert "api2" in text
    lb = await balancer(native.parse(text.replace("[backend.app]\n", '[backend.app]\nscheduler = "lc"\n'),
                                     source="routing.toml"))
    async with _client(lb) as client:
        for path in ("/api/a", "/api/b", "/api/c", "/api/d"):
            async with asyncio.timeout(5):
                assert await _get(client, path) == (200, "api")
    api1, api2 = lb.engine.backends["api"].servers
    assert (api1.total, api2.total, api1.active, api2.active) == (4, 0, 0, 0)
