"""The sans-IO parts of the IPVS backend, without a kernel: netlink messages (built, encoded and
decoded back), ipvsadm-style listing, the wanted table under ldirectord semantics, reconcile
diffing, the forward decision, and the TOML settings."""
from __future__ import annotations

import socket

import pytest

from virtserve.engine.backend import Backend
from virtserve.engine.config.model import ConfigError
from virtserve.engine.config.native import parse
from virtserve.engine.ipvs import listing, messages as m, plan, reconcile
from virtserve.engine.ipvs.table import (
    FWD_MASQ, FWD_ROUTE, FWD_TUNNEL, SVC_F_ONEPACKET, SVC_F_PERSISTENT, SVC_F_SCHED1, SVC_F_SCHED2,
    Destination, KernelTimeouts, Stats, SyncDaemon, VirtualService,
)

pytestmark = pytest.mark.timeout(30)


def roundtrip(msg):
    msg.encode()
    back = m.ipvs_msg(msg.data)
    back.decode()
    return back


@pytest.mark.parametrize("svc", [
    VirtualService(socket.IPPROTO_TCP, "10.9.9.9", 80, scheduler="rr"),
    VirtualService(socket.IPPROTO_UDP, "10.9.9.9", 53, scheduler="sh", timeout=600, netmask=24,
                   flags=SVC_F_PERSISTENT | SVC_F_ONEPACKET | SVC_F_SCHED2),
    VirtualService(0, fwmark=7, scheduler="wlc"),
    VirtualService(socket.IPPROTO_TCP, "fd00::1", 443, af=socket.AF_INET6, flags=SVC_F_PERSISTENT,
                   timeout=60, netmask=64),
])
def test_service_messages_round_trip(svc):
    assert m.parse_service(roundtrip(m.service_request(m.CMD_NEW_SERVICE, svc))) == svc


def test_service_message_layout_is_what_the_kernel_reads():
    svc = VirtualService(socket.IPPROTO_TCP, "10.9.9.9", 80, scheduler="wrr", flags=SVC_F_PERSISTENT,
                         timeout=300, netmask=24)
    msg = roundtrip(m.service_request(m.CMD_NEW_SERVICE, svc))
    assert (msg["cmd"], msg["version"]) == (m.CMD_NEW_SERVICE, 1)
    nested = msg.get_attr("IPVS_CMD_ATTR_SERVICE")
    assert nested.get_attr("IPVS_SVC_ATTR_ADDR")[:4] == socket.inet_aton("10.9.9.9")
    assert nested.get_attr("IPVS_SVC_ATTR_NETMASK") == socket.inet_aton("255.255.255.0")  # network order
    assert nested.get_attr("IPVS_SVC_ATTR_FLAGS")["mask"] == 0xFFFFFFFF
    # A delete names the service and nothing else.
    delete = roundtrip(m.service_request(m.CMD_DEL_SERVICE, svc)).get_attr("IPVS_CMD_ATTR_SERVICE")
    assert delete.get_attr("IPVS_SVC_ATTR_SCHED_NAME") is None


def test_dest_messages_carry_the_forwarding_method_asked_for():
    # pyroute2 0.9.7's IPVSDest would default to direct routing: here masq is masq.
    svc = VirtualService(socket.IPPROTO_TCP, "10.9.9.9", 80)
    for method in (FWD_MASQ, FWD_ROUTE, FWD_TUNNEL):
        dest = Destination("10.0.0.2", 8080, weight=3, forward=method, u_threshold=100, l_threshold=10)
        assert m.parse_dest(roundtrip(m.dest_request(m.CMD_NEW_DEST, svc, dest)), socket.AF_INET) == dest
    gone = roundtrip(m.dest_request(m.CMD_DEL_DEST, svc, Destination("10.0.0.2", 8080)))
    assert gone.get_attr("IPVS_CMD_ATTR_DEST").get_attr("IPVS_DEST_ATTR_WEIGHT") is None


def test_timeouts_and_daemon_messages():
    msg = roundtrip(m.timeouts_request(KernelTimeouts(900, 120, 300)))
    assert m.parse_timeouts(msg) == KernelTimeouts(900, 120, 300)
    daemon = SyncDaemon("backup", "eth1", syncid=9)
    back = m.parse_daemon(roundtrip(m.daemon_request(m.CMD_NEW_DAEMON, daemon)))
    assert (back.state, back.interface, back.syncid) == ("backup", "eth1", 9)


# --- listing --------------------------------------------------------------------------------

def test_listing_matches_ipvsadm_format():
    # Captured from ipvsadm 1.31 -Ln on Debian's 6.1 kernel for the same table.
    table = [
        (VirtualService(socket.IPPROTO_TCP, "10.9.9.9", 81, scheduler="sh", timeout=600, netmask=24,
                        flags=SVC_F_PERSISTENT | SVC_F_SCHED1 | SVC_F_SCHED2),
         [Destination("10.0.0.4", 81, weight=0, forward=FWD_TUNNEL), Destination("10.0.0.3", 81, forward=FWD_ROUTE)]),
        (VirtualService(0, fwmark=7, scheduler="wlc"), [Destination("10.0.0.5", 0, forward=FWD_ROUTE)]),
        (VirtualService(socket.IPPROTO_TCP, "10.9.9.9", 80, scheduler="rr"),
         [Destination("10.0.0.2", 8080, weight=3, inactive=5)]),
        (VirtualService(socket.IPPROTO_UDP, "10.9.9.9", 53, scheduler="mh", flags=SVC_F_ONEPACKET | SVC_F_SCHED2),
         [Destination("10.0.0.2", 53)]),
        (VirtualService(socket.IPPROTO_UDP, "10.9.9.9", 54, scheduler="rr", flags=SVC_F_PERSISTENT | SVC_F_ONEPACKET,
                        timeout=30), []),
    ]
    assert listing.render(table, 0x010201, 4096) == """\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.9.9.9:80 rr
  -> 10.0.0.2:8080                Masq    3      0          5         
TCP  10.9.9.9:81 sh (sh-fallback,sh-port) persistent 600 mask 255.255.255.0
  -> 10.0.0.3:81                  Route   1      0          0         
  -> 10.0.0.4:81                  Tunnel  0      0          0         
UDP  10.9.9.9:53 mh (mh-port) ops
  -> 10.0.0.2:53                  Masq    1      0          0         
UDP  10.9.9.9:54 rr persistent 30 ops
FWM  7 wlc
  -> 10.0.0.5:0                   Route   1      0          0         
"""


def test_listing_stats_rates_and_large_numbers():
    svc = VirtualService(socket.IPPROTO_TCP, "10.9.9.9", 80, scheduler="rr",
                         stats=Stats(conns=5, inpkts=17, outpkts=17, inbytes=1068, outbytes=20302, inbps=100, outbps=1903))
    dest = Destination("10.0.0.2", 8080, stats=Stats(conns=5, inpkts=17, outpkts=17, inbytes=1068, outbytes=20302,
                                                     inpps=2, outpps=2, inbps=100, outbps=1903))
    stats = listing.render([(svc, [dest])], 0x010201, 4096, stats=True).splitlines()
    assert stats[1] == "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes"
    assert stats[3] == "TCP  10.9.9.9:80                         5       17       17     1068    20302"
    assert stats[4] == "  -> 10.0.0.2:8080                       5       17       17     1068    20302"
    rate = listing.render([(svc, [dest])], 0x010201, 4096, rate=True).splitlines()
    assert rate[1] == "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS"
    assert rate[4] == "  -> 10.0.0.2:8080                       0        2        2      100     1903"
    assert [listing.largenum(n) for n in (99_999_999, 123_456_789, 12_345_678_901, 5 * 10**14)] == \
        [" 99999999", "  123456K", "   12345M", "     500T"]
    assert listing.largenum(123_456_789_012, exact=True) == " 123456789012"


def test_listing_sorts_as_libipvs_does():
    # ipvsadm compares addresses by a signed 32-bit difference: 10.x sorts after 200.x.
    svcs = [(VirtualService(socket.IPPROTO_TCP, a, 80), []) for a in ("10.0.0.1", "200.0.0.1", "100.0.0.1")]
    lines = listing.render(svcs, 0x010201, 4096).splitlines()[3:]
    assert [line.split()[1] for line in lines] == ["100.0.0.1:80", "200.0.0.1:80", "10.0.0.1:80"]


# --- reconcile ------------------------------------------------------------------------------

SVC = VirtualService(socket.IPPROTO_TCP, "10.9.9.9", 80, scheduler="wrr")
A, B = Destination("10.0.0.2", 80), Destination("10.0.0.3", 80, weight=2)


def test_reconcile_adds_changes_removes_and_is_idempotent():
    foreign = VirtualService(socket.IPPROTO_TCP, "10.9.9.9", 99, scheduler="rr")
    current = reconcile.index([(VirtualService(socket.IPPROTO_TCP, "10.9.9.9", 80, scheduler="rr"),
                                [A, Destination("10.0.0.9", 80)]), (foreign, [A])])
    wanted = [(SVC, [A, B])]
    ops = reconcile.diff(current, wanted)
    assert [str(op) for op in ops] == [
        "set_service TCP 10.9.9.9:80", "del_dest TCP 10.9.9.9:80 -> 10.0.0.9:80 weight 1",
        "add_dest TCP 10.9.9.9:80 -> 10.0.0.3:80 weight 2"]
    assert all(op.service.key != foreign.key for op in ops)  # not ours: never touched
    assert reconcile.diff(reconcile.index(wanted), wanted) == []  # applied: nothing more to do
    assert [op.verb for op in reconcile.diff({}, wanted)] == ["add_service", "add_dest", "add_dest"]


def test_read_back_counters_do_not_count_as_changes():
    live = Destination("10.0.0.2", 80, active=4, inactive=9, stats=Stats(conns=13))
    assert reconcile.diff_dests(SVC, [live], [A]) == []
    assert [op.verb for op in reconcile.diff_dests(SVC, [live], [Destination("10.0.0.2", 80, weight=5)])] == ["set_dest"]


# --- plan: ldirectord semantics over live backend state -------------------------------------

def config(extra: str = "", forward: str = "ipvs", server_extra: str = ""):
    return parse(f"""
[listen.web]
bind = "10.9.9.9:80"
mode = "tcp"
forward = "{forward}"
scheduler = "wlc"
check = "connect"
{extra}
servers = [ {{ name = "a", address = "10.0.0.2:8080" {server_extra} }}, {{ name = "b", address = "10.0.0.3:8080", weight = 2 }} ]
""")


def wanted(backend: Backend) -> list[tuple[str, int]]:
    svc = plan.services_of(config().frontends[0], backend.spec)[0]
    return [(d.address, d.weight) for d in plan.wanted_destinations(svc, backend)]


def test_failed_server_leaves_the_table_and_fallback_covers_all_down():
    backend = Backend(config('fallback = { address = "127.0.0.1:80", forward = "gate" }').backends[0])
    a, b = backend.servers
    assert wanted(backend) == [("10.0.0.2", 1), ("10.0.0.3", 2)]
    backend.set_status(a, False)
    assert wanted(backend) == [("10.0.0.3", 2)]
    backend.set_status(b, False)
    assert wanted(backend) == [("127.0.0.1", 1)]
    backend.set_status(b, True)
    assert wanted(backend) == [("10.0.0.3", 2)]


def test_quiescent_keeps_a_failed_server_at_weight_zero_and_runtime_weights_apply():
    backend = Backend(config("quiescent = true").backends[0])
    a, b = backend.servers
    backend.set_status(a, False)
    assert wanted(backend) == [("10.0.0.2", 0), ("10.0.0.3", 2)]
    seen = []
    backend.weight_listeners.append(lambda bk, s: seen.append((s.name, s.weight)))
    backend.set_user_weight(b, 9)
    backend.set_admin(b, "maint")
    assert seen == [("b", 9), ("b", 0)]
    assert wanted(backend) == [("10.0.0.2", 0), ("10.0.0.3", 0)]


def test_services_carry_scheduler_flags_persistence_and_protocol():
    cfg = config('scheduler-options = { sh-port = true }\npersistent = { timeout = "600s", netmask = 24 }\n'
                 'ipvs = { protocol = "udp", one-packet = true }', server_extra=', forward = "ipip", u-threshold = 10')
    fe, be = cfg.frontends[0], cfg.backends[0]
    assert fe.forward == "ipvs" and be.ipvs.protocol == "udp" and be.servers[0].forward == "ipip"
    (svc,) = plan.services_of(fe, be)
    assert (svc.protocol, svc.scheduler, svc.timeout, svc.netmask) == (socket.IPPROTO_UDP, "wlc", 600, 24)
    assert svc.flags == SVC_F_PERSISTENT | SVC_F_ONEPACKET  # sh-port means nothing to wlc
    dest = plan.destination(svc, be.servers[0], 1)
    assert (dest.forward, dest.port, dest.u_threshold) == (FWD_TUNNEL, 80, 10)  # tunnels keep the VIP port


def test_forward_decision_says_why():
    cfg = config(forward="auto")
    fe, be = cfg.frontends[0], cfg.backends[0]
    assert plan.decide(fe, be, None) == plan.Decision("web", "ipvs", "forward = 'auto' and the kernel has IPVS")
    fallback = plan.decide(fe, be, "the kernel's IPVS is not usable here: Operation not permitted")
    assert fallback.engine == "userspace" and "not permitted" in fallback.reason
    http = parse('[listen.w]\nbind = "10.0.0.1:80"\nforward = "auto"\nservers = [{ address = "10.0.0.2:80" }]')
    decision = plan.decide(http.frontends[0], http.backends[0], None)
    assert decision.engine == "userspace" and "mode http" in decision.reason
    assert plan.decide(fe, be, None).engine == "ipvs"
    default = parse('[listen.w]\nbind = "10.0.0.1:80"\nmode = "tcp"\nservers = [{ address = "10.0.0.2:80" }]')
    assert default.frontends[0].forward == "userspace"


@pytest.mark.parametrize("toml, message", [
    ('forward = "kernel"', "<string>:5: 'forward' in [listen.web]: expected one of 'userspace', 'ipvs', 'auto'"),
    ('ipvs = { protocol = "fwm" }', "protocol 'fwm' needs fwmark"),
    ('ipvs = { one-packet = true }', "one-packet in [listen.web] is for udp services"),
    ('ipvs = { protcol = "udp" }', "unknown key 'protcol'"),
])
def test_bad_ipvs_settings_name_the_line(toml, message):
    with pytest.raises(ConfigError) as err:
        parse(f'[listen.web]\nbind = "10.9.9.9:80"\nmode = "tcp"\nservers = [{{ address = "10.0.0.2:80" }}]\n{toml}\n')
    assert message in str(err.value)


def test_forward_ipvs_that_the_kernel_cannot_serve_is_refused_with_the_reason():
    with pytest.raises(ConfigError, match=r"<string>:2: frontend web: forward = 'ipvs' cannot serve it: .*"
                                          r"scheduler 'roundrobin' has no kernel module"):
        parse('\n[listen.web]\nbind = "10.9.9.9:80"\nmode = "tcp"\nforward = "ipvs"\nscheduler = "roundrobin"\n'
              'servers = [{ address = "10.0.0.2:80" }]\n')


def test_director_wide_settings():
    cfg = parse('[ipvs]\ntimeout = { tcp = "900s", udp = "5m" }\n'
                'sync = [{ state = "master", interface = "eth0", syncid = 3 }, { state = "backup", interface = "eth1" }]\n')
    assert (cfg.ipvs.tcp, cfg.ipvs.tcpfin, cfg.ipvs.udp) == (900.0, 0.0, 300.0)
    assert [(s.state, s.interface, s.syncid) for s in cfg.ipvs.sync] == [("master", "eth0", 3), ("backup", "eth1", 0)]
    with pytest.raises(ConfigError, match="<string>:2: sync in \\[ipvs\\]: at most one master"):
        parse('[ipvs]\nsync = [{ state = "master", interface = "a" }, { state = "master", interface = "b" }]\n')


@pytest.mark.parametrize("ipvs, message", [
    ('timeout = { tcp = "500ms" }', "<string>:3: the tcp timeout of [ipvs] must be whole seconds from 1s"),
    ('timeout = { udp = "30d" }', "<string>:3: the udp timeout of [ipvs] must be whole seconds"),
    ('timeout = { fin = "1s" }', "<string>:3: unknown key 'fin'"),
    ('sync = { state = "master", interface = "eth0", syncid = 256 }', "<string>:3: a sync daemon of [ipvs]: syncid must be 0 to 255"),
    ('sync = { state = "master", interface = "a-very-long-name0" }', "<string>:3: a sync daemon of [ipvs]: interface"),
    ('sync = { state = "primary", interface = "eth0" }', "<string>:3: 'state' in a sync daemon of [ipvs]: expected one of"),
    ('sync = { interface = "eth0" }', "<string>:3: a sync daemon of [ipvs] needs state"),
])
def test_bad_director_wide_settings_name_the_line(ipvs, message):
    with pytest.raises(ConfigError) as err:
        parse(f'\n[ipvs]\n{ipvs}\n')
    assert message in str(err.value)


def test_convert_writes_the_ipvs_settings_back():
    from virtserve.engine.config.toml_writer import to_toml

    cfg = parse('grace = 3\n[ipvs]\ntimeout = { tcp = "15m", udp = "301s" }\n'
                'sync = [{ state = "master", interface = "eth0", syncid = 3 }, { state = "backup", interface = "eth1" }]\n'
                '[listen.web]\nbind = "10.9.9.9:53"\nmode = "tcp"\nforward = "ipvs"\nscheduler = "sh"\n'
                'ipvs = { protocol = "udp", one-packet = true }\n'
                'servers = [{ address = "10.0.0.2:53", forward = "gate", u-threshold = 9, l-threshold = 3 }]\n')
    again = parse(to_toml(cfg))
    assert again == cfg and again.ipvs == cfg.ipvs and again.backends[0].ipvs.one_packet
