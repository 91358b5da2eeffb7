"""The embeddable API: serve() with a Config, a dict or a path; the blocking variant; the fixture."""
import urllib.request

import aiohttp
import pytest
from helpers import topology

import virtserve

pytestmark = pytest.mark.timeout(30)


def _dict(ports, **extra):
    return {"listen": {"web": {"bind": "127.0.0.1:0", "scheduler": "rr", **extra,
                               "servers": [{"name": f"s{i}", "address": f"127.0.0.1:{p}"} for i, p in enumerate(ports)]}}}


async def test_serve_accepts_config_dict_and_path_on_ephemeral_ports(backends, tmp_path):
    web1, web2 = await backends("web1", "web2")
    path = tmp_path / "lb.toml"
    path.write_text(f'[listen.web]\nbind = "127.0.0.1:0"\nservers = [{{ address = "127.0.0.1:{web1.port}" }}, '
                    f'{{ address = "127.0.0.1:{web2.port}" }}]\n')
    seen_ports = set()
    for config in (topology([web1.port, web2.port]), _dict([web1.port, web2.port]), path, str(path)):
        async with virtserve.serve(config) as lb:
            host, port = lb.address
            assert host == "127.0.0.1" and port != 0
            assert lb.url == f"http://127.0.0.1:{port}"
            seen_ports.add(port)
            async with aiohttp.ClientSession() as s:
                assert {await (await s.get(lb.url)).text() for _ in range(2)} == {"web1", "web2"}
    assert len(seen_ports) == 4


async def test_live_server_state_counts_requests_in_flight(backends):
    (slow,) = await backends("slow")
    async with virtserve.serve(_dict([slow.port])) as lb:
        async with aiohttp.ClientSession() as s:
            import asyncio
            pending = asyncio.ensure_future(s.get(lb.url + "/slow/0.5"))
            for _ in range(50):
                await asyncio.sleep(0.02)
                if lb.servers()[0]["active"] == 1:
                    break
            assert lb.servers()[0]["active"] == 1
            assert (await pending).status == 200
        state = lb.servers("web")[0]
        assert state["active"] == 0 and state["total"] == 1 and state["up"] is True


def test_blocking_variant_serves_plain_synchronous_code():
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Hello(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"sync"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with virtserve.serve_blocking(_dict([server.server_address[1]])) as lb:
            with urllib.request.urlopen(lb.url, timeout=5) as resp:
                assert resp.read() == b"sync"
            assert lb.servers()[0]["total"] == 1
    finally:
        server.shutdown()


def test_bad_config_dict_names_the_key():
    with pytest.raises(virtserve.engine.config.ConfigError) as err:
        virtserve.serve(_dict([1], scheduler="nope"))
    assert "nope" in str(err.value) and "listen.web" in str(err.value)


def test_shipped_pytest_fixture(pytester):
    pytester.makepyfile("""
        import urllib.request, urllib.error

        def test_uses_fixture(virtserve_lb):
            lb = virtserve_lb({"listen": {"web": {"bind": "127.0.0.1:0", "servers": []}}})
            try:
                urllib.request.urlopen(lb.url, timeout=5)
            except urllib.error.HTTPError as err:
                assert err.code == 503
            else:
                raise AssertionError("no server: expected 503")
    """)
    result = pytester.runpytest_subprocess("-p", "virtserve", "-q")
    result.assert_outcomes(passed=1)


async def test_ipv6_listener_forwards_the_client_address(backends):
    (web,) = await backends("v6")
    config = {"listen": {"web": {"bind": "[::1]:0", "forwardfor": True,
                                 "servers": [{"address": f"127.0.0.1:{web.port}"}]}}}
    async with virtserve.serve(config) as lb:
        host, port = lb.address
        assert host == "::1" and lb.url == f"http://[::1]:{port}"
        async with aiohttp.ClientSession() as s:
            headers = dict((await (await s.get(lb.url + "/headers")).json())["headers"])
        assert headers["X-Forwarded-For"] == "::1"


def test_blocking_set_server_steers_weight_and_state_and_refuses_bad_input():
    with virtserve.serve_blocking(_dict([1, 2], scheduler="wrr")) as lb:
        assert lb.set_server("web", "s0", weight=5) == {**lb.servers()[0], "weight": 5, "admin": "ready"}
        drained = lb.set_server("web", "s1", state="drain", weight=3)
        assert drained["admin"] == "drain" and drained["weight"] == 0  # no new work while drained
        assert lb.set_server("web", "s1", state="ready")["weight"] == 3  # the operator's weight back
        assert lb.set_server("web", "s1", state="maint")["admin"] == "maint"
        with pytest.raises(KeyError, match="no backend 'nope'; there are: web"):
            lb.set_server("nope", "s0", state="drain")
        with pytest.raises(KeyError, match="no server 'nope' in backend 'web'; there are: s0, s1"):
            lb.set_server("web", "nope", state="drain")
        with pytest.raises(ValueError, match="state must be one of ready, drain, maint"):
            lb.set_server("web", "s0", state="down", weight=9)
        with pytest.raises(ValueError, match="weight must be a whole number from 0 to 256"):
            lb.set_server("web", "s0", state="drain", weight=257)
        s0 = lb.servers()[0]
        assert s0["weight"] == 5 and s0["admin"] == "ready"  # refused calls changed nothing
