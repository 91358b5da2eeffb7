"""The stats page served in-band on a proxy's own binds (`stats uri` in a frontend, backend or
listen): a request whose URI starts with the uri is answered by the proxy with the page of that
proxy's settings, every other one is proxied; several proxies each have their own settings."""
import base64
import json

import pytest
from rawhttp import RawClient

pytestmark = pytest.mark.timeout(30)

AUTH = "Basic " + base64.b64encode(b"ops:secret").decode()


def _config(app, other):
    return {
        "frontend": {
            "web": {"bind": "127.0.0.1:0", "backend": "app", "stats": {"uri": "/fe-stats", "hide-version": True}},
            "plain": {"bind": "127.0.0.1:0", "backend": "other"},
        },
        "backend": {
            "app": {"servers": [{"name": "a1", "address": f"127.0.0.1:{app.port}"}],
                    "stats": {"uri": "/admin/stats", "auth": ["ops:secret"], "realm": "App stats",
                              "refresh": "3s"}},
            "other": {"servers": [{"name": "o1", "address": f"127.0.0.1:{other.port}"}]},
        },
    }


async def _get(client: RawClient, path: str, *headers: str, method: str = "GET"):
    extra = "".join(f"{h}\r\n" for h in headers)
    await client.send(f"{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
    return await (client.head_response() if method == "HEAD" else client.response())


async def test_each_proxy_answers_its_own_stats_uri_and_proxies_the_rest(backends, balancer):
    app, other = await backends("app", "other")
    lb = await balancer(_config(app, other))
    web = await RawClient.connect(*lb.addresses["web"][0])

    r = await _get(web, "/")  # not the stats uri: proxied
    assert (r.status, r.body) == (200, b"app")

    # The frontend's page: no credentials asked, version hidden, refreshing every 10 s (default).
    r = await _get(web, "/fe-stats")
    assert r.status == 200 and r.header("content-type").startswith("text/html")
    page = r.body.decode()
    assert "a1" in page and "app (backend)" in page and "web (frontend)" in page
    assert " version " not in page and '<meta http-equiv="refresh" content="10">' in page
    assert r.keep_alive  # answered on the same keep-alive connection
    r = await _get(web, "/fe-stats/anything?x=1")  # a prefix, as HAProxy matches it
    assert r.status == 200
    r = await _get(web, "/fe-stats", method="HEAD")
    assert r.status == 200 and r.body == b"" and int(r.header("content-length")) > 0
    post = await RawClient.connect(*lb.addresses["web"][0])
    r = await _get(post, "/fe-stats", "Content-Length: 0", method="POST")
    assert r.status == 405 and r.header("allow") == "GET, HEAD"

    # The backend's page, reached through the frontend routing there: its own auth and realm.
    r = await _get(web, "/admin/stats")
    assert r.status == 401 and r.header("www-authenticate") == 'Basic realm="App stats"'
    r = await _get(web, "/admin/stats", f"Authorization: {AUTH}")
    assert r.status == 200 and '<meta http-equiv="refresh" content="3">' in r.body.decode()
    assert " version " in r.body.decode()  # not hidden on this one
    r = await _get(web, "/admin/stats;csv", f"Authorization: {AUTH}")
    assert r.status == 200 and r.body.startswith(b"# pxname,svname,")
    assert any(line.startswith(b"app,a1,") for line in r.body.splitlines())
    assert app.requests == 1  # only the first request reached the server

    # A frontend without stats, to a backend without: the same paths are proxied.
    plain = await RawClient.connect(*lb.addresses["plain"][0])
    for path in ("/fe-stats", "/admin/stats"):
        r = await _get(plain, path)
        assert (r.status, r.body) == (200, b"other")
    r = await _get(plain, "/headers", f"Authorization: {AUTH}")
    assert ["Authorization", AUTH] in json.loads(r.body)["headers"]  # forwarded untouched
