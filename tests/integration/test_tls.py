"""TLS termination end to end: real handshakes from Python's ssl, aiohttp, curl and openssl
s_client against a virtserve listener; SNI, ALPN, versions, client certificates, bounded
handshakes, certificate reload, redirect to https, and TLS toward the servers."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import ssl

import aiohttp
import pytest
from l4helpers import wait_for
from tlshelpers import TlsBackend, client_context, handshake, need, run

from virtserve.certs import LocalCA

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = LocalCA.load_or_create(d)
    certs = d / "certs"
    # Name order puts "a-default" first: the default certificate of the directory.
    ca.issue(["default.test", "127.0.0.1"], certs / "a-default.pem")
    ca.issue(["api.test"], certs / "b-api.pem")
    ca.issue(["*.wild.test"], certs / "c-wild.pem")
    alice = ca.issue(["alice"], d / "clients" / "alice.pem", client=True)
    other_ca = LocalCA.load_or_create(d / "other")
    mallory = other_ca.issue(["mallory"], d / "clients" / "mallory.pem", client=True)
    backend = ca.issue(["backend.test", "127.0.0.1"], d / "backend.pem")
    return {"dir": d, "ca": ca, "certs": certs, "alice": alice, "mallory": mallory, "backend": backend}


def tls_config(port_list, ssl_settings, *, forwardfor=True, mode="http", extra_binds=(), **listen):
    return {"listen": {"vs": {
        "bind": [{"address": "127.0.0.1:0", "ssl": ssl_settings}, *extra_binds],
        "mode": mode, "forwardfor": forwardfor and mode == "http",
        "timeout": {"handshake": "1s"},
        "servers": [{"address": f"127.0.0.1:{p}"} for p in port_list], **listen}}}


async def _get_json(url: str, ctx: ssl.SSLContext, **kw):
    async with aiohttp.ClientSession() as s:
        async with s.get(url, ssl=ctx, **kw) as r:
            return r.status, json.loads(await r.text())


async def test_https_terminated_with_forwarded_proto_and_alpn(backends, balancer, pki):
    (web1,) = await backends("web1")
    lb = await balancer(tls_config([web1.port], {"crt": str(pki["certs"])}))
    port = lb.address[1]
    status, body = await _get_json(f"https://127.0.0.1:{port}/headers", client_context(pki["ca"]))
    seen = {k.lower(): v for k, v in body["headers"]}
    assert status == 200 and body["backend"] == "web1"
    assert seen["x-forwarded-proto"] == "https"
    assert seen["x-forwarded-for"] == "127.0.0.1"
    got = await handshake(port, client_context(pki["ca"]), "default.test")
    assert got["alpn"] == "http/1.1"


async def test_sni_picks_the_certificate_with_wildcards_and_a_default(backends, balancer, pki):
    (web1,) = await backends("web1")
    lb = await balancer(tls_config([web1.port], {"crt": str(pki["certs"])}))
    port = lb.address[1]
    ctx = client_context(pki["ca"])
    assert (await handshake(port, ctx, "api.test"))["cn"] == "CN=api.test"
    assert (await handshake(port, ctx, "API.Test"))["cn"] == "CN=api.test"
    assert (await handshake(port, ctx, "x.wild.test"))["cn"] == "CN=*.wild.test"
    ctx.check_hostname = False
    assert (await handshake(port, ctx, "a.b.wild.test"))["cn"] == "CN=default.test"  # one label only
    assert (await handshake(port, ctx, "unknown.test"))["cn"] == "CN=default.test"
    assert (await handshake(port, ctx, None))["cn"] == "CN=default.test"  # no SNI at all


async def test_curl_with_resolve_and_openssl_s_client(backends, balancer, pki):
    curl, openssl = need("curl"), need("openssl")
    (web1,) = await backends("web1")
    lb = await balancer(tls_config([web1.port], {"crt": str(pki["certs"]), "min-version": "TLSv1.3"}))
    port = lb.address[1]
    rc, out = await run(curl, "-sS", "--cacert", str(pki["ca"].path), "--resolve", f"api.test:{port}:127.0.0.1",
                        "-w", "\n%{http_version} %{ssl_verify_result}", f"https://api.test:{port}/")
    assert rc == 0 and out.startswith("web1") and out.endswith("1.1 0"), out
    rc, out = await run(curl, "-sS", "--cacert", str(pki["ca"].path), "--resolve",
                        f"www.wild.test:{port}:127.0.0.1", f"https://www.wild.test:{port}/")
    assert rc == 0 and out == "web1", out
    rc, out = await run(openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "api.test",
                        "-CAfile", str(pki["ca"].path), "-alpn", "http/1.1", "-tls1_3", stdin=b"")
    assert "Verify return code: 0 (ok)" in out and "subject=CN = api.test" in out, out
    assert "ALPN protocol: http/1.1" in out
    # Below the minimum version: refused in the handshake.
    rc, out = await run(openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2", stdin=b"")
    assert rc != 0 and "Cipher is (NONE)" in out, out


async def test_client_certificates_required_and_passed_in_headers(backends, balancer, pki):
    (web1,) = await backends("web1")
    settings = {"crt": str(pki["certs"]), "verify": "required", "ca-file": str(pki["ca"].path),
                "client-subject-header": "X-SSL-Client-DN", "client-verify-header": "X-SSL-Client-Verify"}
    lb = await balancer(tls_config([web1.port], settings))
    url = f"https://127.0.0.1:{lb.address[1]}/headers"
    status, body = await _get_json(url, client_context(pki["ca"], pki["alice"]),
                                   headers={"X-SSL-Client-Verify": "forged", "x-ssl-client-dn": "CN=root"})
    seen = [(k.lower(), v) for k, v in body["headers"]]
    assert ("x-ssl-client-verify", "SUCCESS") in seen and ("x-ssl-client-dn", "CN=alice") in seen
    assert ("x-ssl-client-verify", "forged") not in seen and ("x-ssl-client-dn", "CN=root") not in seen
    for cert in (None, pki["mallory"]):  # no certificate, or one from another CA: no handshake
        with pytest.raises(aiohttp.ClientError):
            await _get_json(url, client_context(pki["ca"], cert))
    # The listener is unharmed by the refusals.
    status, _ = await _get_json(url, client_context(pki["ca"], pki["alice"]))
    assert status == 200


async def test_optional_client_certificate_reports_none(backends, balancer, pki):
    (web1,) = await backends("web1")
    settings = {"crt": str(pki["certs"]), "verify": "optional", "ca-file": str(pki["ca"].path),
                "client-verify-header": "X-Verify"}
    lb = await balancer(tls_config([web1.port], settings))
    _, body = await _get_json(f"https://127.0.0.1:{lb.address[1]}/headers", client_context(pki["ca"]))
    assert ["X-Verify", "NONE"] in body["headers"]


async def _served_meanwhile(port: int, pki) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"https://127.0.0.1:{port}/", ssl=client_context(pki["ca"])) as r:
            assert r.status == 200 and await r.text() == "web1"


async def test_stalled_and_malformed_handshakes_cost_one_connection_each(backends, balancer, pki):
    (web1,) = await backends("web1")
    lb = await balancer(tls_config([web1.port], {"crt": str(pki["certs"])}))
    port = lb.address[1]
    stalled = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]
    # Half a ClientHello, then silence.
    stalled[0][1].write(bytes.fromhex("16030100c8010000c40303") + os.urandom(20))
    garbage_r, garbage_w = await asyncio.open_connection("127.0.0.1", port)
    garbage_w.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # plain HTTP on the TLS port
    bad_r, bad_w = await asyncio.open_connection("127.0.0.1", port)
    bad_w.write(bytes.fromhex("160301ffff") + os.urandom(600))  # a record header that lies
    await _served_meanwhile(port, pki)
    async with asyncio.timeout(5):
        assert await garbage_r.read(-1) is not None  # closed (an alert or nothing)
        await bad_r.read(-1)
        for reader, _ in stalled:  # the handshake timeout (1 s) ends each of them
            await reader.read(-1)
    for _, writer in stalled + [(None, garbage_w), (None, bad_w)]:
        writer.close()
    await _served_meanwhile(port, pki)


async def test_certificates_reload_when_files_change_without_failed_handshakes(backends, balancer, pki, tmp_path):
    (web1,) = await backends("web1")
    ca: LocalCA = pki["ca"]
    site = ca.issue(["reload.test"], tmp_path / "site.pem")
    lb = await balancer(tls_config([web1.port], {"crt": str(site), "watch": "100ms"}))
    port = lb.address[1]
    ctx = client_context(ca)
    first = (await handshake(port, ctx, "reload.test"))["serial"]
    failures: list[BaseException] = []
    serials: set[int] = set()
    stop = asyncio.Event()

    async def hammer() -> None:
        while not stop.is_set():
            try:
                serials.add((await handshake(port, ctx, "reload.test"))["serial"])
            except (OSError, ssl.SSLError) as exc:
                failures.append(exc)

    workers = [asyncio.create_task(hammer()) for _ in range(3)]
    await asyncio.sleep(0.2)
    ca.issue(["reload.test"], site)  # a new certificate, written whole (rename)
    # Written in place, half at a time: the half-written file is not loaded, the old set serves.
    data = site.read_bytes()
    async with asyncio.timeout(10):
        while (await handshake(port, ctx, "reload.test"))["serial"] == first:
            await asyncio.sleep(0.05)
        with open(site, "wb") as f:
            f.write(data[: len(data) // 2])
        await asyncio.sleep(0.3)
        with open(site, "wb") as f:
            f.write(data)
        await asyncio.sleep(0.3)
    stop.set()
    await asyncio.gather(*workers)
    assert not failures, failures[:3]
    assert len(serials) >= 2 and first in serials
    assert (await handshake(port, ctx, "reload.test"))["serial"] != first


async def test_reload_certificates_on_demand(backends, balancer, pki, tmp_path):
    (web1,) = await backends("web1")
    ca: LocalCA = pki["ca"]
    site = ca.issue(["ondemand.test"], tmp_path / "site.pem")
    lb = await balancer(tls_config([web1.port], {"crt": str(site), "watch": 0}))
    port = lb.address[1]
    first = (await handshake(port, client_context(ca), "ondemand.test"))["serial"]
    assert lb.engine.reload_certificates() == 0  # nothing changed
    ca.issue(["ondemand.test"], site)
    assert (await handshake(port, client_context(ca), "ondemand.test"))["serial"] == first  # no watch
    assert lb.engine.reload_certificates() == 1
    assert (await handshake(port, client_context(ca), "ondemand.test"))["serial"] != first


async def test_plain_bind_redirects_to_https(backends, balancer, pki):
    (web1,) = await backends("web1")
    config = tls_config([web1.port], {"crt": str(pki["certs"])}, extra_binds=["127.0.0.1:0"],
                        redirect={"scheme": "https", "code": 301})
    lb = await balancer(config)
    tls_port, plain_port = (a[1] for a in lb.addresses["vs"])
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{plain_port}/a/b?c=1", allow_redirects=False,
                         headers={"Host": "shop.test"}) as r:
            assert r.status == 301 and r.headers["Location"] == "https://shop.test/a/b?c=1"
        # The redirect is followed to the TLS bind of the same frontend, which serves.
        async with s.get(f"http://127.0.0.1:{plain_port}/", headers={"Host": f"127.0.0.1:{tls_port}"},
                         ssl=client_context(pki["ca"]), allow_redirects=False) as r:
            assert r.headers["Location"] == f"https://127.0.0.1:{tls_port}/"
        async with s.get(f"https://127.0.0.1:{tls_port}/", ssl=client_context(pki["ca"])) as r:
            assert r.status == 200 and await r.text() == "web1"


async def test_tls_to_servers_verified_with_sni_and_pooled(balancer, pki):
    backend = await TlsBackend(pki["backend"]).start()
    try:
        config = {"listen": {"vs": {"bind": "127.0.0.1:0", "mode": "http", "servers": [{
            "address": f"127.0.0.1:{backend.port}",
            "ssl": {"verify": "required", "ca-file": str(pki["ca"].path), "sni": "backend.test"}}]}}}
        lb = await balancer(config)
        async with aiohttp.ClientSession() as s:
            for _ in range(5):
                async with s.get(f"{lb.url}/x") as r:
                    assert r.status == 200
                    assert (await r.json())["sni"] == "backend.test"
        assert len(set(backend.peers)) == 1  # five requests, one pooled TLS connection
        # A name the server's certificate does not hold: verification fails, no response.
        bad = {"listen": {"bad": {"bind": "127.0.0.1:0", "mode": "http", "retries": 0, "servers": [{
            "address": f"127.0.0.1:{backend.port}",
            "ssl": {"verify": "required", "ca-file": str(pki["ca"].path), "sni": "other.test"}}]}}}
        lb2 = await balancer(bad)
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{lb2.url}/") as r:
                assert r.status == 503
    finally:
        await backend.stop()


async def test_tcp_mode_tls_offload(backends, balancer, pki):
    (web1,) = await backends("web1")
    lb = await balancer(tls_config([web1.port], {"crt": str(pki["certs"]), "alpn": []}, mode="tcp"))
    async with aiohttp.ClientSession() as s:
        async with s.get(f"https://127.0.0.1:{lb.address[1]}/", ssl=client_context(pki["ca"])) as r:
            assert r.status == 200 and await r.text() == "web1"


async def test_expired_certificate_is_refused_at_start(pki, tmp_path):
    from virtserve.api import Balancer
    from virtserve.engine.config.model import ConfigError

    old = pki["ca"].issue(["old.test"], tmp_path / "old.pem", days=1,
                          not_before=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=10))
    with pytest.raises(ConfigError, match="expired on"):
        Balancer(tls_config([1], {"crt": str(old)}))


async def test_tcp_mode_encrypts_toward_servers_and_retries_one_that_fails_verification(balancer, pki):
    """The L4 connect to a TLS server waits on the TCP connect and then the handshake; a
    certificate that does not verify fails that attempt, and the next server serves."""
    backend = await TlsBackend(pki["backend"]).start()
    try:
        def server(sni):
            return {"address": f"127.0.0.1:{backend.port}",
                    "ssl": {"verify": "required", "ca-file": str(pki["ca"].path), "sni": sni}}
        config = {"listen": {"vs": {"bind": "127.0.0.1:0", "mode": "tcp", "retries": 1,
                                    "servers": [server("other.test"), server("backend.test")]}}}
        lb = await balancer(config)
        async with aiohttp.ClientSession() as s:
            for _ in range(4):  # round robin: two of them start on the server that fails
                async with s.get(f"{lb.url}/x", headers={"Connection": "close"}) as r:
                    assert r.status == 200
                    assert (await r.json())["sni"] == "backend.test"
        bad, good = lb.servers()
        assert bad["failures"] >= 1 and bad["active"] == 0  # a failed attempt gives its slot back
        await wait_for(lambda: lb.servers()[1]["active"] == 0)
    finally:
        await backend.stop()
