"""Health checks end to end: real backends change state; the balancer sees it in time, says why,
and sends traffic only where it should."""
from __future__ import annotations

import asyncio
import logging
import sys

import pytest
from checkhelpers import listen, names, status_of, wait_for

pytestmark = pytest.mark.timeout(30)

INTERVAL, TIMEOUT, RISE, FALL = 0.2, 0.2, 2, 2
HTTP_CHECK = {"type": "http", "request": "/health", "receive": "ok", "interval": INTERVAL,
              "timeout": TIMEOUT, "rise": RISE, "fall": FALL}
# Detection must take no longer than interval x fall + timeout. The slack covers the polling step
# and event-loop scheduling, not a slow check: it is well under one interval.
BOUND = INTERVAL * FALL + TIMEOUT
SLACK = 0.15





async def settled(lb, *names: str) -> None:
    """Wait until every named server has had a check and is UP."""
    await wait_for(lambda: all(status_of(lb, n)["check"] is not None and status_of(lb, n)["status"] == "UP"
                               for n in names), 5)


@pytest.mark.parametrize("fault, reason, code", [
    ("status500", "Layer7 wrong status", 500),
    ("mismatch", "Layer7 invalid response", 200),
    ("hang", "Layer7 timeout", None),
    ("closed", "Layer4 connection problem", None),
])
async def test_fault_is_detected_within_bound_logged_and_recovered(
        health_backends, balancer, caplog, fault, reason, code):
    web1, web2 = await health_backends("web1", "web2")
    lb = await balancer(listen([web1.port, web2.port], HTTP_CHECK))
    await settled(lb, "s1", "s2")
    assert sorted(await names(lb.url, 4)) == ["web1", "web1", "web2", "web2"]

    caplog.set_level(logging.INFO, logger="virtserve")
    if fault == "status500":
        web1.status = 500
    elif fault == "mismatch":
        web1.body = "degraded"
    elif fault == "hang":
        web1.hang = True
    else:
        await web1.stop()
    took = await wait_for(lambda: status_of(lb, "s1")["status"] == "DOWN", BOUND + 2)
    assert took <= BOUND + SLACK, f"detected after {took:.3f}s, bound {BOUND}s"

    s1 = status_of(lb, "s1")
    assert s1["up"] is False and s1["check"]["reason"] == reason and s1["check"]["code"] == code
    assert s1["check"]["duration_ms"] >= 0
    if fault == "hang":
        assert s1["check"]["duration_ms"] >= TIMEOUT * 1000 * 0.9
    line = next(r.getMessage() for r in caplog.records if "is DOWN" in r.getMessage())
    assert line.startswith(f"Server vs/s1 is DOWN, reason: {reason}")
    assert (f"code: {code}," in line) == (code is not None)
    assert "check duration: " in line and "1 active and 0 backup servers left" in line
    assert await names(lb.url, 4) == ["web2"] * 4

    # Come back: rise good checks.
    web1.status, web1.body, web1.hang = 200, "ok", False
    if fault == "closed":
        await web1.start()
    took = await wait_for(lambda: status_of(lb, "s1")["status"] == "UP", 5)
    assert took <= INTERVAL * RISE + TIMEOUT + SLACK
    assert any("Server vs/s1 is UP, reason: Layer7 check passed, code: 200" in r.getMessage()
               for r in caplog.records)
    assert sorted(await names(lb.url, 4)) == ["web1", "web1", "web2", "web2"]


async def test_dead_server_at_start_is_found_by_the_first_check(health_backends, balancer):
    web1, web2 = await health_backends("web1", "web2")
    port = web2.port
    await web2.stop()
    lb = await balancer(listen([web1.port, port], {**HTTP_CHECK, "interval": 1.0, "fall": 3}))
    # HAProxy: up at start, but down at the first failure (not after `fall` of them). The second
    # server's first check is spread to half an interval after start.
    took = await wait_for(lambda: status_of(lb, "s2")["status"] == "DOWN", 3)
    assert took <= 0.5 + 1.0 / 2 + SLACK


async def test_checks_are_spread_over_the_interval(health_backends, balancer):
    backends = await health_backends("a", "b", "c", "d")
    lb = await balancer(listen([b.port for b in backends], {**HTTP_CHECK, "interval": 0.8}))
    # After a quarter interval only the first server has been checked, not all four at once.
    await asyncio.sleep(0.1)
    assert [b.checks for b in backends] == [1, 0, 0, 0]
    # The backend counts a probe when it answers; the proxy records the result a moment later.
    await wait_for(lambda: all(s["check"] is not None for s in lb.servers()), 2)
    assert all(b.checks for b in backends) and lb.servers()[3]["check"]["ok"]


async def test_connect_check_and_unchecked_server(health_backends, balancer):
    web1, web2 = await health_backends("web1", "web2")
    lb = await balancer(listen([web1.port, web2.port], {"type": "connect", "interval": INTERVAL, "fall": 1},
                               servers=[{}, {"check": False}]))
    await wait_for(lambda: status_of(lb, "s1")["check"] is not None, 2)
    assert status_of(lb, "s1")["check"]["reason"] == "Layer4 check passed"
    await web1.stop()
    await web2.stop()
    await wait_for(lambda: status_of(lb, "s1")["status"] == "DOWN", 2)
    await asyncio.sleep(INTERVAL * 3)
    s2 = status_of(lb, "s2")
    assert s2["status"] == "UP" and s2["check"] is None  # never checked, so never taken out


async def test_checktype_on_and_off(health_backends, balancer):
    web1, = await health_backends("web1")
    lb = await balancer(listen([web1.port, web1.port], {"type": "on"},
                               servers=[{}, {"check": {"type": "off"}}]))
    assert status_of(lb, "s1")["status"] == "UP"
    s2 = status_of(lb, "s2")
    assert s2["status"] == "DOWN" and s2["check"]["reason"] == "checktype off"
    await asyncio.sleep(0.3)
    assert web1.checks == 0


async def test_tcp_send_expect(raw_server, balancer):
    answer = {"text": b"+PONG\r\n"}

    async def redis_like(reader, writer):
        line = await reader.readline()
        if line == b"PING\r\n":
            writer.write(answer["text"])
            await writer.drain()

    server = await raw_server(redis_like)
    lb = await balancer(listen([server.port], {"type": "tcp", "send": "PING\r\n", "expect": "^\\+PONG",
                                               "interval": INTERVAL, "timeout": TIMEOUT, "fall": 1},
                               mode="tcp"))
    await wait_for(lambda: status_of(lb, "s1")["check"] is not None, 2)
    assert status_of(lb, "s1")["status"] == "UP"
    answer["text"] = b"-ERR loading\r\n"
    await wait_for(lambda: status_of(lb, "s1")["status"] == "DOWN", 2)
    assert "no match" in status_of(lb, "s1")["check"]["info"]


async def test_smtp_check_against_a_real_smtp_server(balancer, unused_tcp_port):
    aiosmtpd = pytest.importorskip("aiosmtpd.controller")

    class Sink:
        async def handle_DATA(self, server, session, envelope):
            return "250 OK"

    controller = aiosmtpd.Controller(Sink(), hostname="127.0.0.1", port=unused_tcp_port)
    controller.start()
    try:
        lb = await balancer(listen([unused_tcp_port], {"type": "smtp", "interval": INTERVAL, "timeout": 1.0,
                                                        "fall": 1}, mode="tcp"))
        await wait_for(lambda: status_of(lb, "s1")["check"] is not None, 3)
        check = status_of(lb, "s1")["check"]
        assert check["ok"] and check["code"] == 250
    finally:
        controller.stop()
    await wait_for(lambda: status_of(lb, "s1")["status"] == "DOWN", 3)


async def test_smtp_check_fails_on_a_bad_banner(raw_server, balancer):
    async def busy(reader, writer):
        writer.write(b"554 too busy\r\n")
        await writer.drain()

    server = await raw_server(busy)
    lb = await balancer(listen([server.port], {"type": "smtp", "interval": INTERVAL, "fall": 1}, mode="tcp"))
    await wait_for(lambda: status_of(lb, "s1")["status"] == "DOWN", 2)
    check = status_of(lb, "s1")["check"]
    assert check["reason"] == "Layer7 wrong status" and check["code"] == 554


async def test_external_check_gets_address_and_port_and_is_bounded(health_backends, balancer, tmp_path):
    web1, = await health_backends("web1")
    flag = tmp_path / "healthy"
    flag.write_text("")
    script = tmp_path / "check.sh"
    script.write_text(f'#!/bin/sh\n[ "$1" = 127.0.0.1 ] && [ "$2" = {web1.port} ] && [ -e {flag} ]\n')
    script.chmod(0o755)
    lb = await balancer(listen([web1.port, web1.port], {"type": "external", "command": str(script),
                                                        "interval": INTERVAL, "timeout": TIMEOUT, "fall": 1},
                               servers=[{}, {"check": {"command": [sys.executable, "-c",
                                                                   "import time; time.sleep(30)"]}}]))
    await wait_for(lambda: status_of(lb, "s1")["check"] is not None, 2)
    assert status_of(lb, "s1")["status"] == "UP"
    flag.unlink()
    await wait_for(lambda: status_of(lb, "s1")["status"] == "DOWN", 2)
    assert status_of(lb, "s1")["check"]["code"] == 1
    # A command that hangs is killed at the timeout.
    await wait_for(lambda: status_of(lb, "s2")["status"] == "DOWN", 3)
    check = status_of(lb, "s2")["check"]
    assert check["reason"] == "External check timeout"
    assert check["duration_ms"] < (TIMEOUT + 0.5) * 1000


async def test_agent_check_sets_state_and_weight(health_backends, raw_server, balancer):
    web1, web2 = await health_backends("web1", "web2")
    reply = {"line": b"up 50%\n"}

    async def agent(reader, writer):
        writer.write(reply["line"])
        await writer.drain()

    agent_server = await raw_server(agent)
    lb = await balancer(listen([web1.port, web2.port], None,
                               servers=[{"weight": 10, "check": {"type": "agent", "port": agent_server.port,
                                                                 "interval": INTERVAL, "fall": 1, "rise": 1}},
                                        {"weight": 10}], scheduler="wrr"))
    await wait_for(lambda: status_of(lb, "s1")["weight"] == 5, 2)
    reply["line"] = b"drain\n"
    await wait_for(lambda: status_of(lb, "s1")["weight"] == 0, 2)
    assert status_of(lb, "s1")["status"] == "UP"
    assert await names(lb.url, 3) == ["web2"] * 3
    reply["line"] = b"ready 100%\n"
    await wait_for(lambda: status_of(lb, "s1")["weight"] == 10, 2)
    reply["line"] = b"maint\n"
    await wait_for(lambda: status_of(lb, "s1")["status"] == "DOWN", 2)
    assert status_of(lb, "s1")["check"]["reason"] == "Agent reports MAINT"
    reply["line"] = b"up\n"
    await wait_for(lambda: status_of(lb, "s1")["status"] == "UP", 2)
