"""Stats page and CSV over real HTTP; Prometheus text through prometheus-client's parser."""
import asyncio
import base64
import csv
import io

import aiohttp
import pytest
from admin_helpers import admin_topology, stats_url
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.timeout(30)

def _basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


AUTH = _basic("admin", "s3cret")


async def _traffic(lb, n):
    seen = []
    async with aiohttp.ClientSession() as s:
        for _ in range(n):
            async with s.get(lb.url) as r:
                seen.append(await r.text())
    return seen


def _csv(text):
    assert text.startswith("# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,"
                           "wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,")
    return list(csv.DictReader(io.StringIO(text[2:])))


async def test_page_and_csv_show_live_counters(backends, balancer):
    web1, web2 = await backends("web1", "web2")
    lb = await balancer(admin_topology([web1.port, web2.port], stats={"uri": "/stats", "refresh": 5}))
    await _traffic(lb, 6)
    async with aiohttp.ClientSession() as s:
        async with s.get(stats_url(lb, "/stats")) as r:
            assert r.status == 200 and r.content_type == "text/html"
            page = await r.text()
        async with s.get(stats_url(lb, "/stats;csv")) as r:
            rows = _csv(await r.text())
    assert '<meta http-equiv="refresh" content="5">' in page and "<script" not in page
    assert "version 0.1.0" in page
    for name in ("vs (frontend)", "vs (backend)", ">s1<", ">s2<", "UP"):
        assert name in page
    by = {(r["pxname"], r["svname"]): r for r in rows}
    fe, be = by[("vs", "FRONTEND")], by[("vs", "BACKEND")]
    s1, s2 = by[("vs", "s1")], by[("vs", "s2")]
    assert fe["status"] == "OPEN" and fe["type"] == "0" and fe["req_tot"] == "6"
    assert int(fe["bin"]) > 0 and int(fe["bout"]) > 6 * len("web1")
    assert be["type"] == "1" and be["stot"] == "6" and be["hrsp_2xx"] == "6" and be["algo"] == "rr"
    assert s1["stot"] == s2["stot"] == "3" and s1["status"] == "UP" and s1["type"] == "2"
    assert s1["weight"] == "1" and s1["addr"] == f"127.0.0.1:{web1.port}" and int(s1["bout"]) > 0
    assert int(s1["lastchg"]) >= 0 and s1["rtime"] != "" and s1["ttime"] != ""


async def test_auth_realm_and_hidden_version(backends, balancer):
    (web1,) = await backends("web1")
    lb = await balancer(admin_topology([web1.port], stats={
        "uri": "/", "realm": "LB Stats", "auth": (("admin", "s3cret"),), "hide_version": True}))
    async with aiohttp.ClientSession() as s:
        async with s.get(stats_url(lb, "/")) as r:
            assert r.status == 401
            assert r.headers["WWW-Authenticate"] == 'Basic realm="LB Stats"'
        async with s.get(stats_url(lb, "/"), headers=_basic("admin", "wrong")) as r:
            assert r.status == 401
        async with s.get(stats_url(lb, "/metrics")) as r:
            assert r.status == 401  # the metrics sit behind the same credentials
        async with s.get(stats_url(lb, "/"), headers=AUTH) as r:
            assert r.status == 200
            page = await r.text()
    assert "0.1.0" not in page and "version" not in page


async def test_admin_form_drains_a_server(backends, balancer):
    web1, web2 = await backends("web1", "web2")
    lb = await balancer(admin_topology([web1.port, web2.port], stats={
        "uri": "/admin", "admin": True, "auth": (("admin", "s3cret"),)}))
    async with aiohttp.ClientSession(headers=AUTH) as s:
        async with s.get(stats_url(lb, "/admin")) as r:
            assert '<select name="action">' in await r.text()
        async with s.post(stats_url(lb, "/admin"), data={"b": "vs", "s": "s1", "action": "drain"}) as r:
            assert r.status == 200 and "Action: DONE" in await r.text()  # followed the 303
        assert set(await _traffic(lb, 6)) == {"web2"}
        async with s.get(stats_url(lb, "/admin;csv")) as r:
            s1 = {row["svname"]: row for row in _csv(await r.text())}["s1"]
        assert s1["status"] == "DRAIN" and s1["weight"] == "0"
        async with s.post(stats_url(lb, "/admin"), data={"b": "vs", "s": "s1", "action": "weight", "weight": "3"}) as r:
            assert r.status == 200
        async with s.post(stats_url(lb, "/admin"), data={"b": "vs", "s": "s1", "action": "ready"}) as r:
            assert r.status == 200
        seen = await _traffic(lb, 8)
        assert seen.count("web1") == 4  # rr ignores weights; s1 is back
        async with s.get(stats_url(lb, "/admin;csv")) as r:
            s1 = {row["svname"]: row for row in _csv(await r.text())}["s1"]
        assert s1["status"] == "UP" and s1["weight"] == "3"
        async with s.post(stats_url(lb, "/admin"), data={"b": "vs", "s": "nope", "action": "maint"}) as r:
            assert "ERR: No such server." in await r.text()


async def test_page_is_read_only_without_admin(backends, balancer):
    (web1,) = await backends("web1")
    lb = await balancer(admin_topology([web1.port], stats={"uri": "/"}))
    async with aiohttp.ClientSession() as s:
        async with s.post(stats_url(lb, "/"), data={"b": "vs", "s": "s1", "action": "maint"}) as r:
            assert r.status == 405
    assert lb.servers()[0]["weight"] == 1


def _metrics(text):
    return {f.name: f for f in text_string_to_metric_families(text)}


def _value(family, **labels):
    for sample in family.samples:
        if all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    raise KeyError(labels)


async def test_metrics_parse_and_follow_haproxy_names(backends, balancer):
    web1, web2 = await backends("web1", "web2")
    lb = await balancer(admin_topology([web1.port, web2.port], stats={"uri": "/stats"}))
    await _traffic(lb, 9)
    async with aiohttp.ClientSession() as s:
        # One request that takes a measurable time: the loop clock ticks in milliseconds.
        async with s.get(lb.url + "/slow/0.05") as r:
            assert r.status == 200
        async with s.get(lb.url + "/status/503") as r:
            assert r.status == 503
        async with s.get(stats_url(lb, "/metrics")) as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
            m = _metrics(await r.text())
    assert _value(m["haproxy_frontend_http_requests"], proxy="vs") == 11
    assert _value(m["haproxy_frontend_sessions"], proxy="vs") >= 1
    assert _value(m["haproxy_frontend_bytes_out"], proxy="vs") > 0
    assert _value(m["haproxy_backend_http_responses"], proxy="vs", code="2xx") == 10
    assert _value(m["haproxy_backend_http_responses"], proxy="vs", code="5xx") == 1
    assert sum(_value(m["haproxy_server_sessions"], proxy="vs", server=x) for x in ("s1", "s2")) == 11
    assert _value(m["haproxy_server_status"], proxy="vs", server="s1", state="UP") == 1
    assert _value(m["haproxy_server_status"], proxy="vs", server="s1", state="MAINT") == 0
    assert _value(m["haproxy_server_weight"], proxy="vs", server="s2") == 1
    assert _value(m["haproxy_backend_total_time_average_seconds"], proxy="vs") > 0
    hist = m["haproxy_backend_request_duration_seconds"]
    assert hist.type == "histogram"
    assert _value(hist, proxy="vs", le="+Inf") == 11
    counts = [s.value for s in hist.samples if s.name.endswith("_bucket")]
    assert counts == sorted(counts)  # cumulative
    conn = m["haproxy_server_connect_duration_seconds"]
    # keep-alive pooling: at most one new server connection per client connection here
    assert 1 <= _value(conn, proxy="vs", server="s1", le="+Inf") <= 6


async def test_two_engines_keep_their_own_registries(backends, balancer):
    (web1,) = await backends("web1")
    a = await balancer(admin_topology([web1.port], stats={"uri": "/"}, name="alpha"))
    b = await balancer(admin_topology([web1.port], stats={"uri": "/"}, name="beta"))
    await _traffic(a, 3)
    async with aiohttp.ClientSession() as s:
        ma = _metrics(await (await s.get(stats_url(a, "/metrics"))).text())
        mb = _metrics(await (await s.get(stats_url(b, "/metrics"))).text())
    assert {x.labels["proxy"] for x in ma["haproxy_frontend_sessions"].samples} == {"alpha"}
    assert {x.labels["proxy"] for x in mb["haproxy_frontend_sessions"].samples} == {"beta"}
    assert _value(mb["haproxy_frontend_sessions"], proxy="beta") == 0


def _stable(text):
    """The metrics text less the one value that moves with the clock between two renders."""
    return [line.rsplit(" ", 1)[0] if line.startswith("haproxy_server_check_last_change_seconds") else line
            for line in text.splitlines()]


async def test_metrics_text_is_prometheus_clients_own_as_servers_change(backends, balancer):
    from prometheus_client import generate_latest

    web1, web2 = await backends("web1", "web2")
    lb = await balancer(admin_topology([web1.port, web2.port], stats={"uri": "/"}))
    stats = lb.engine.admin.stats
    runtime = stats.runtime
    await _traffic(lb, 5)
    steps = [None, "set server vs/s1 state maint", f"add server vs/s3 127.0.0.1:{web1.port} enabled",
             "set server vs/s2 state drain", "del server vs/s1", "set server vs/s2 state ready"]
    async with aiohttp.ClientSession() as s:
        for step in steps:
            if step is not None:
                assert runtime.execute(step) in ("\n", "New server registered.\n\n", "Server deleted.\n\n")
                await _traffic(lb, 3)
            async with s.get(stats_url(lb, "/metrics")) as r:
                served = await r.text()
            assert _stable(served) == _stable(generate_latest(stats.registry).decode())
            servers = {x.labels["server"] for x in _metrics(served)["haproxy_server_weight"].samples}
            assert servers == {x["name"] for x in lb.servers()}


async def test_page_colours_each_server_row_by_its_state(backends, balancer):
    web1, web2, web3 = await backends("web1", "web2", "web3")
    lb = await balancer(admin_topology([web1.port, web2.port, web3.port], stats={"uri": "/"}))
    lb.set_server("vs", "s2", state="drain")
    lb.set_server("vs", "s3", state="maint")
    await _traffic(lb, 4)
    async with aiohttp.ClientSession() as s:
        async with s.get(stats_url(lb, "/")) as r:
            page = await r.text()
    rows = {}
    for tr in page.split("<tr")[1:]:
        cls = tr.split('"', 2)[1] if tr.startswith(' class="') else ""
        name = tr.split('<td class="n">', 1)[1].split("<", 1)[0] if '<td class="n">' in tr else None
        if name:
            rows.setdefault(name, []).append(cls)
    assert rows["s1"] == ["up"] and rows["s2"] == ["drain"] and rows["s3"] == ["maint"]
    assert rows["FRONTEND"] == ["px"] and rows["BACKEND"] == ["px"]
    assert ">DRAIN " in page and ">MAINT " in page  # the status, with the time since it changed
    assert page.count('<th colspan="4" class="g">Sessions</th>') == 2  # grouped headers, as HAProxy's


async def test_backend_max_sessions_is_at_least_its_busiest_servers(backends, balancer):
    (web1,) = await backends("web1")
    lb = await balancer(admin_topology([web1.port], stats={"uri": "/"}))
    async with aiohttp.ClientSession() as s:
        slow = [asyncio.ensure_future(s.get(lb.url + "/slow/0.3")) for _ in range(3)]
        async with asyncio.timeout(5):
            while lb.servers()[0]["active"] != 3:
                await asyncio.sleep(0.01)
        for r in await asyncio.gather(*slow):
            assert r.status == 200
        async with s.get(stats_url(lb, "/;csv")) as r:  # first read after the burst ended
            by = {row["svname"]: row for row in _csv(await r.text())}
    assert by["s1"]["smax"] == "3" and by["BACKEND"]["smax"] == "3" and by["BACKEND"]["scur"] == "0"


async def test_two_frontends_sharing_a_backend_count_their_own(backends, balancer):
    """Requests are counted once, per server; a backend's totals are its servers' sums, and two
    frontends sending to one backend each show only their own requests."""
    import dataclasses

    from virtserve.engine.admin import view
    from virtserve.engine.config.model import BindSpec

    web1, web2 = await backends("web1", "web2")
    config = admin_topology([web1.port, web2.port], stats={"uri": "/stats"})
    (fe,) = config.frontends
    other = dataclasses.replace(fe, name="other", binds=(BindSpec("127.0.0.1", 0),))
    lb = await balancer(dataclasses.replace(config, frontends=(fe, other)))
    await _traffic(lb, 4)  # through "vs"
    host, port = lb.engine.addresses["other"][0]
    async with aiohttp.ClientSession() as s:
        for _ in range(2):
            async with s.get(f"http://{host}:{port}/status/404") as r:
                assert r.status == 404
        async with s.get(stats_url(lb, "/stats;csv")) as r:
            rows = {(r["pxname"], r["svname"]): r for r in _csv(await r.text())}
    assert rows[("vs", "FRONTEND")]["req_tot"] == "4" and rows[("vs", "FRONTEND")]["hrsp_2xx"] == "4"
    assert rows[("other", "FRONTEND")]["req_tot"] == "2" and rows[("other", "FRONTEND")]["hrsp_4xx"] == "2"
    be = rows[("vs", "BACKEND")]
    assert (be["req_tot"], be["hrsp_2xx"], be["hrsp_4xx"]) == ("6", "4", "2")
    s1, s2 = rows[("vs", "s1")], rows[("vs", "s2")]
    assert int(be["bout"]) == int(s1["bout"]) + int(s2["bout"]) > 0
    assert view.backend_counters(lb.engine.backends["vs"]).rt_count == 6


async def test_check_columns_and_metrics_follow_the_health_checks(health_backends, balancer):
    from checkhelpers import listen, status_of
    from checkhelpers import wait_for as wait_until

    web1, web2 = await health_backends("web1", "web2")
    config = listen([web1.port, web2.port], {"type": "http", "request": "/health", "interval": 0.1,
                                              "timeout": 0.5, "rise": 2, "fall": 3},
                    servers=[{}, {"backup": True}])
    config["stats"] = {"bind": "127.0.0.1:0"}
    lb = await balancer(config)
    await wait_until(lambda: web1.checks >= 2, 5)
    web1.status = 500
    await wait_until(lambda: status_of(lb, "s1")["status"] == "DOWN", 5)
    async with aiohttp.ClientSession() as s:
        async with s.get(stats_url(lb, "/;csv")) as r:
            rows = {r["svname"]: r for r in _csv(await r.text())}
        async with s.get(stats_url(lb, "/metrics")) as r:
            m = _metrics(await r.text())
    s1, s2 = rows["s1"], rows["s2"]
    assert s1["status"] == "DOWN" and s1["check_status"] == "L7STS" and s1["check_code"] == "500"
    assert s1["check_desc"] == "Layer7 wrong status" and s1["last_chk"] != ""
    assert (s1["check_rise"], s1["check_fall"], s1["check_health"]) == ("2", "3", "0")
    assert int(s1["chkfail"]) >= 3 and s2["chkfail"] == "0" and s2["check_health"] == "4"  # rise + fall - 1
    assert _value(m["haproxy_server_check_failures"], proxy="vs", server="s1") == int(s1["chkfail"])
    assert _value(m["haproxy_server_check_code"], proxy="vs", server="s1") == 500
    assert _value(m["haproxy_server_check_last_change_seconds"], proxy="vs", server="s1") < 5
    assert (_value(m["haproxy_server_active"], proxy="vs", server="s1"),
            _value(m["haproxy_server_backup"], proxy="vs", server="s2")) == (1, 1)
    assert _value(m["haproxy_server_uweight"], proxy="vs", server="s1") == 1
    assert _value(m["haproxy_backend_loadbalanced"], proxy="vs") == 0
    state = lb.engine.admin.stats.runtime.execute("show servers state").splitlines()
    s1_state, s2_state = state[2].split(), state[3].split()
    # srv_op_state, then srv_check_result (2 failed, 3 passed) and srv_check_health
    assert (s1_state[5], s1_state[11], s1_state[12]) == ("0", "2", "0")
    assert (s2_state[5], s2_state[11], s2_state[12]) == ("2", "3", "4")
