"""http-request rules in a backend section apply to the requests routed to that backend, after
the frontend's rules, as HAProxy applies them; other backends' requests are left alone."""
import json

import pytest
from aiohttp import web
from helpers import start_app
from tlshelpers import free_port
from rawhttp import RawClient

import virtserve

pytestmark = pytest.mark.timeout(30)

CFG = """\
defaults
    mode http
    timeout connect 5s
frontend web
    bind 127.0.0.1:{port}
    acl is_api path_beg /api
    http-request add-header X-Front yes
    use_backend api if is_api
    default_backend site
backend api
    acl is_v1 path_beg /api/v1
    http-request set-header X-Api-Version 1 if is_v1
    http-request del-header X-Debug
    http-request add-header X-Routed api
    http-request redirect location /api/v2/ code 301 if {{ path /api/old }}
    reqadd X-Legacy:\\ on
    server a 127.0.0.1:{api}
backend site
    server s 127.0.0.1:{site}
"""


class Echo:
    """Answers every path with its name and the request headers it got."""

    def __init__(self, name: str) -> None:
        self.name, self.paths = name, []

    async def start(self) -> "Echo":
        async def echo(request):
            self.paths.append(request.path)
            return web.json_response({"name": self.name, "headers": [[k, v] for k, v in request.headers.items()]})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", echo)
        self.runner, self.port = await start_app(app)
        return self


async def _get(client, path, *headers):
    await client.send(f"GET {path} HTTP/1.1\r\nHost: x\r\n{''.join(h + chr(13) + chr(10) for h in headers)}\r\n".encode())
    r = await client.response()
    if r.status != 200:
        return r, None, None
    body = json.loads(r.body)
    seen: dict[str, list[str]] = {}
    for k, v in body["headers"]:
        seen.setdefault(k.lower(), []).append(v)
    return r, body["name"], seen


async def test_backend_rules_apply_to_the_requests_routed_there(tmp_path):
    api, site = await Echo("api").start(), await Echo("site").start()
    port = free_port()
    path = tmp_path / "haproxy.cfg"
    path.write_text(CFG.format(port=port, api=api.port, site=site.port))
    try:
        async with virtserve.serve(path) as lb:
            c = await RawClient.connect(*lb.address)
            _, name, seen = await _get(c, "/api/v1/items", "X-Debug: 1", "X-Api-Version: 9")
            assert name == "api"
            assert seen["x-front"] == ["yes"]  # the frontend's rule, then the backend's
            assert seen["x-api-version"] == ["1"]  # set-header replaced the client's
            assert "x-debug" not in seen
            assert seen["x-routed"] == ["api"] and seen["x-legacy"] == ["on"]

            _, name, seen = await _get(c, "/api/v2/items", "X-Api-Version: 9")
            assert name == "api" and seen["x-api-version"] == ["9"]  # condition false: untouched

            r, _, _ = await _get(c, "/api/old")
            assert r.status == 301 and r.header("location") == "/api/v2/"
            assert "/api/old" not in api.paths  # answered by the proxy

            _, name, seen = await _get(c, "/page", "X-Debug: 1")
            assert name == "site"
            assert seen["x-debug"] == ["1"] and "x-routed" not in seen and seen["x-front"] == ["yes"]
    finally:
        for s in (api, site):
            await s.runner.cleanup()
