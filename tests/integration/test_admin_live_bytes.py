"""Bytes moving on connections that are still open show on the stats page's CSV, `show stat`
and the metrics while they move (not only once the connection ends), and are counted once."""
import asyncio
import csv
import io

import aiohttp
import pytest
from admin_helpers import admin_topology, stats_url
from l4helpers import hold, naming, wait_for
from prometheus_client.parser import text_string_to_metric_families

from virtserve.engine.admin.socket import send

pytestmark = pytest.mark.timeout(30)


async def _read(lb, tmp_path=None):
    """(CSV rows by (proxy, name), metrics samples by (name, proxy, server)) read over HTTP."""
    async with aiohttp.ClientSession() as s:
        async with s.get(stats_url(lb, "/stats;csv")) as r:
            text = await r.text()
        async with s.get(stats_url(lb, "/metrics")) as r:
            metrics = await r.text()
    rows = {(r["pxname"], r["svname"]): r for r in csv.DictReader(io.StringIO(text[2:]))}
    samples = {(x.name, x.labels.get("proxy"), x.labels.get("server")): x.value
               for f in text_string_to_metric_families(metrics) for x in f.samples}
    return rows, samples


def _bytes(rows, samples, server):
    """(in, out) of server s1, vs's backend and frontend, from both the CSV and the metrics."""
    row, be, fe = rows[("vs", server)], rows[("vs", "BACKEND")], rows[("vs", "FRONTEND")]
    csv_pairs = [(int(r["bin"]), int(r["bout"])) for r in (row, be, fe)]
    metric_pairs = [(samples[(f"haproxy_{kind}_bytes_in_total", "vs", srv)],
                     samples[(f"haproxy_{kind}_bytes_out_total", "vs", srv)])
                    for kind, srv in (("server", server), ("backend", None), ("frontend", None))]
    assert csv_pairs == metric_pairs, (csv_pairs, metric_pairs)
    return csv_pairs


async def test_a_long_lived_tcp_connection_shows_growing_bytes_before_it_closes(raw_server, balancer, tmp_path):
    srv1 = await raw_server(naming("s1"))
    lb = await balancer(admin_topology([srv1.port], mode="tcp",
                                       stats={"uri": "/stats", "socket": str(tmp_path / "s.sock")}))
    conn = await hold(lb)  # the server sent "s1\n"
    try:
        sent = 0
        for round_ in (1, 2):
            piece = b"x" * 20000
            conn.writer.write(piece)
            sent += len(piece)
            async with asyncio.timeout(5):
                await conn.reader.readexactly(len(piece))
            rows, samples = await _read(lb)
            # in: what the client sent; out: the name line and the echo. Same in every view.
            assert _bytes(rows, samples, "s1") == [(sent, sent + 3)] * 3, round_
            assert rows[("vs", "s1")]["scur"] == "1"  # still open
        stat = await asyncio.to_thread(send, str(tmp_path / "s.sock"), "show stat")
        s1 = next(r for r in csv.DictReader(io.StringIO(stat[2:])) if r["svname"] == "s1")
        assert (int(s1["bin"]), int(s1["bout"])) == (sent, sent + 3)
    finally:
        conn.close()
    await wait_for(lambda: lb.servers()[0]["active"] == 0)
    rows, samples = await _read(lb)
    assert _bytes(rows, samples, "s1") == [(sent, sent + 3)] * 3  # counted once when it ended


async def test_an_upload_and_a_long_response_show_bytes_while_in_flight(backends, balancer):
    (web1,) = await backends("web1")
    lb = await balancer(admin_topology([web1.port], stats={"uri": "/stats"}))
    host, port = lb.address
    reader, writer = await asyncio.open_connection(host, port)
    try:
        # An upload the echo route streams back as it reads: both directions move mid-request.
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n" + b"u" * 100000)
        async with asyncio.timeout(5):
            await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(50000)
        rows, samples = await _read(lb)
        (s_in, s_out), be, fe = _bytes(rows, samples, "s1")
        assert 100000 <= s_in < 110000 and 50000 <= s_out < 200000 and be == fe == (s_in, s_out)
        writer.write(b"u" * 100000)
        async with asyncio.timeout(5):
            await reader.readexactly(150000)
        await wait_for(lambda: lb.servers()[0]["active"] == 0)
    finally:
        writer.close()
    rows, samples = await _read(lb)
    (d_in, d_out), _, _ = _bytes(rows, samples, "s1")
    assert 200000 <= d_in < 210000 and 200000 <= d_out < 210000  # accounted once at its end
    assert rows[("vs", "s1")]["req_tot"] == "" and rows[("vs", "BACKEND")]["req_tot"] == "1"


async def test_a_websocket_tunnel_counts_its_bytes_on_its_server_while_open(backends, balancer):
    (web1,) = await backends("web1")
    lb = await balancer(admin_topology([web1.port], stats={"uri": "/stats"}))
    big = "z" * 300000
    async with aiohttp.ClientSession() as s, asyncio.timeout(10):
        async with s.ws_connect(lb.url + "/ws") as ws:
            rows, samples = await _read(lb)
            (opened_in, opened_out), _, _ = _bytes(rows, samples, "s1")
            assert rows[("vs", "BACKEND")]["hrsp_1xx"] == "1"
            await ws.send_str(big)
            assert await ws.receive_str() == f"web1:{big}"
            rows, samples = await _read(lb)
            (live_in, live_out), be, fe = _bytes(rows, samples, "s1")
            assert live_in - opened_in >= 300000 and live_out - opened_out >= 300005
            assert be == fe == (live_in, live_out)
        await wait_for(lambda: len(lb.engine.state.conns) <= 1)
    rows, samples = await _read(lb)
    (closed_in, closed_out), _, _ = _bytes(rows, samples, "s1")
    # Closing frames only: the tunnel's bytes were not counted twice.
    assert live_in <= closed_in < live_in + 100 and live_out <= closed_out < live_out + 100
