"""What a verdict does: quiescent or out, slow start, backups, the fallback server,
on-marked-down shutdown-sessions, mail alerts, and a steady load that loses nothing."""
from __future__ import annotations

import asyncio
import email
from email import policy

import aiohttp
import pytest
from checkhelpers import listen, names, status_of, wait_for

pytestmark = pytest.mark.timeout(40)

CHECK = {"type": "http", "request": "/health", "interval": 0.2, "timeout": 0.2, "rise": 1, "fall": 1}





@pytest.mark.parametrize("quiescent", [True, False])
async def test_quiescent_keeps_the_place_at_weight_0_else_takes_it_out(health_backends, balancer, quiescent):
    web1, web2 = await health_backends("web1", "web2")
    lb = await balancer(listen([web1.port, web2.port], CHECK, quiescent=quiescent))
    web1.status = 503
    await wait_for(lambda: status_of(lb, "s1")["status"] == "DOWN", 2)
    s1 = status_of(lb, "s1")
    assert (s1["up"], s1["weight"]) == ((True, 0) if quiescent else (False, 1))
    assert await names(lb.url, 3) == ["web2"] * 3
    web1.status = 200
    await wait_for(lambda: status_of(lb, "s1")["status"] == "UP", 2)
    assert (status_of(lb, "s1")["up"], status_of(lb, "s1")["weight"]) == (True, 1)
    assert sorted(await names(lb.url, 2)) == ["web1", "web2"]


async def test_slowstart_ramps_the_weight_back(health_backends, balancer):
    web1, web2 = await health_backends("web1", "web2")
    lb = await balancer(listen([web1.port, web2.port], CHECK, slowstart="1.6s", scheduler="wrr",
                               servers=[{"weight": 100}, {"weight": 100}]))
    assert status_of(lb, "s1")["weight"] == 100  # no ramp at start-up
    web1.status = 500
    await wait_for(lambda: status_of(lb, "s1")["status"] == "DOWN", 2)
    web1.status = 200
    await wait_for(lambda: status_of(lb, "s1")["status"] == "UP", 2)
    seen = [status_of(lb, "s1")["weight"]]
    assert seen[0] < 100
    while seen[-1] < 100:
        await asyncio.sleep(0.1)
        seen.append(status_of(lb, "s1")["weight"])
        assert len(seen) < 40, seen
    assert seen == sorted(seen) and len(set(seen)) >= 4, seen  # rose in steps, never fell


@pytest.mark.parametrize("allbackups", [False, True])
async def test_backups_serve_only_when_no_active_server_is_up(health_backends, balancer, allbackups):
    web1, bk1, bk2 = await health_backends("web1", "bk1", "bk2")
    lb = await balancer(listen([web1.port, bk1.port, bk2.port], CHECK, allbackups=allbackups,
                               servers=[{}, {"backup": True}, {"backup": True}]))
    assert await names(lb.url, 4) == ["web1"] * 4
    web1.status = 500
    await wait_for(lambda: status_of(lb, "s1")["status"] == "DOWN", 2)
    got = await names(lb.url, 4)
    assert sorted(got) == (["bk1", "bk1", "bk2", "bk2"] if allbackups else ["bk1"] * 4)
    web1.status = 200
    await wait_for(lambda: status_of(lb, "s1")["status"] == "UP", 2)
    assert await names(lb.url, 2) == ["web1"] * 2


async def test_fallback_serves_while_every_real_server_is_down(health_backends, balancer):
    web1, web2, sorry = await health_backends("web1", "web2", "sorry")
    lb = await balancer(listen([web1.port, web2.port], CHECK, fallback=f"127.0.0.1:{sorry.port}"))
    assert sorted(await names(lb.url, 2)) == ["web1", "web2"]
    web1.status = 500
    await wait_for(lambda: status_of(lb, "s1")["status"] == "DOWN", 2)
    assert await names(lb.url, 2) == ["web2"] * 2  # one is still up: no fallback yet
    web2.status = 500
    await wait_for(lambda: status_of(lb, "s2")["status"] == "DOWN", 2)
    assert await names(lb.url, 3) == ["sorry"] * 3
    assert status_of(lb, "fallback")["fallback"] is True
    web2.status = 200
    await wait_for(lambda: status_of(lb, "s2")["status"] == "UP", 2)
    assert await names(lb.url, 2) == ["web2"] * 2


async def test_without_fallback_all_down_is_503(health_backends, balancer):
    web1, = await health_backends("web1")
    lb = await balancer(listen([web1.port], CHECK))
    web1.status = 500
    await wait_for(lambda: status_of(lb, "s1")["status"] == "DOWN", 2)
    assert await names(lb.url, 1) == ["503"]


@pytest.mark.parametrize("shutdown", [True, False])
async def test_on_marked_down_shutdown_sessions_l4(health_backends, raw_server, balancer, shutdown):
    web1, = await health_backends("web1")  # what the check looks at

    async def echo(reader, writer):
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()

    service = await raw_server(echo)
    extra = {"on-marked-down": "shutdown-sessions"} if shutdown else {}
    lb = await balancer(listen([service.port], None, mode="tcp",
                               servers=[{"check": {**CHECK, "port": web1.port}}], **extra))
    reader, writer = await asyncio.open_connection(*lb.address)
    writer.write(b"hello")
    async with asyncio.timeout(2):
        assert await reader.readexactly(5) == b"hello"
    web1.status = 500
    await wait_for(lambda: status_of(lb, "s1")["status"] == "DOWN", 2)
    async with asyncio.timeout(2):
        if shutdown:
            assert await reader.read(10) == b""  # closed by the balancer
        else:
            writer.write(b"still")
            assert await reader.readexactly(5) == b"still"  # established sessions go on
    writer.close()


async def test_on_marked_down_shutdown_sessions_l7_closes_pooled_and_busy(health_backends, balancer):
    web1, = await health_backends("web1")
    lb = await balancer(listen([web1.port], CHECK, **{"on-marked-down": "shutdown-sessions"}))
    assert await names(lb.url, 1) == ["web1"]
    engine = lb.engine
    server = engine.backends["vs"].servers[0]
    from virtserve.engine.sessions import connections_to
    assert len(connections_to(engine.state, server)) == 1  # the pooled keep-alive connection
    web1.status = 500
    await wait_for(lambda: status_of(lb, "s1")["status"] == "DOWN", 2)
    await wait_for(lambda: not connections_to(engine.state, server), 2)


async def test_mail_alerts_on_change_and_while_down(health_backends, balancer, unused_tcp_port):
    controller_mod = pytest.importorskip("aiosmtpd.controller")
    mails: list[email.message.EmailMessage] = []

    class Inbox:
        async def handle_DATA(self, server, session, envelope):
            mails.append(email.message_from_bytes(envelope.content, policy=policy.default))
            return "250 OK"

    controller = controller_mod.Controller(Inbox(), hostname="127.0.0.1", port=unused_tcp_port)
    controller.start()
    try:
        web1, web2 = await health_backends("web1", "web2")
        alert = {"to": ["ops@example.com", "oncall@example.com"], "relay": f"127.0.0.1:{unused_tcp_port}",
                 "from": "lb@example.com", "freq": 0.5}
        lb = await balancer(listen([web1.port, web2.port], CHECK, alert=alert))
        await asyncio.sleep(0.5)
        assert mails == []  # nothing changed
        web1.status = 500
        await wait_for(lambda: len(mails) >= 1, 3)
        first = mails[0]
        assert first["Subject"] == f"[virtserve] vs/s1 (127.0.0.1:{web1.port}) is DOWN"
        assert first["To"] == "ops@example.com, oncall@example.com" and first["From"] == "lb@example.com"
        assert "Server vs/s1 is DOWN, reason: Layer7 wrong status, code: 500" in first.get_content()
        await wait_for(lambda: len(mails) >= 2, 3)  # emailalertfreq: reminded while down
        assert mails[1]["Subject"].endswith("is DOWN (still)")
        web1.status = 200
        await wait_for(lambda: any(m["Subject"].endswith("is UP") for m in mails), 3)
        count = len(mails)
        await asyncio.sleep(1.0)
        assert len(mails) == count  # up again: no more reminders
        assert status_of(lb, "s2")["status"] == "UP"
    finally:
        controller.stop()


async def test_alert_status_none_sends_nothing(health_backends, balancer, unused_tcp_port):
    controller_mod = pytest.importorskip("aiosmtpd.controller")
    mails: list[bytes] = []

    class Inbox:
        async def handle_DATA(self, server, session, envelope):
            mails.append(envelope.content)
            return "250 OK"

    controller = controller_mod.Controller(Inbox(), hostname="127.0.0.1", port=unused_tcp_port)
    controller.start()
    try:
        web1, = await health_backends("web1")
        lb = await balancer(listen([web1.port], CHECK, alert={
            "to": "ops@example.com", "relay": f"127.0.0.1:{unused_tcp_port}", "status": "none"}))
        web1.status = 500
        await wait_for(lambda: status_of(lb, "s1")["status"] == "DOWN", 2)
        await asyncio.sleep(0.5)
        assert mails == []
    finally:
        controller.stop()


async def test_steady_load_while_one_of_three_fails_and_recovers(health_backends, balancer):
    """Only requests in flight on the failing server may fail; idempotent ones that find its port
    closed are retried on another server before the checks even notice."""
    web = await health_backends("web1", "web2", "web3")
    lb = await balancer(listen([b.port for b in web], {**CHECK, "rise": 2, "fall": 2}))
    results: dict[str, int] = {}
    failures: list[str] = []
    stop = asyncio.Event()

    async def client() -> None:
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                try:
                    async with session.get(lb.url + "/") as resp:
                        body = await resp.text()
                        if resp.status != 200:
                            failures.append(f"{resp.status}")
                        results[body] = results.get(body, 0) + 1
                except aiohttp.ClientError as exc:
                    failures.append(repr(exc))

    clients = [asyncio.create_task(client()) for _ in range(4)]
    await asyncio.sleep(0.5)
    await web[1].stop()  # closes its port; in-flight requests on it are the only ones at risk
    await wait_for(lambda: status_of(lb, "s2")["status"] == "DOWN", 3)
    during = dict(results)
    await asyncio.sleep(0.5)
    assert results.get("web2", 0) == during.get("web2", 0)  # no traffic to it while down
    await web[1].start()
    await wait_for(lambda: status_of(lb, "s2")["status"] == "UP", 3)
    before = results.get("web2", 0)
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*clients)
    assert results.get("web2", 0) > before  # back in rotation
    assert sum(results.values()) > 100
    assert len(failures) <= 4, failures  # at most the requests in flight (4 clients)
