"""Programming and reading back every kind of service and destination through netlink, checked
against ipvsadm run on the same kernel table."""
from __future__ import annotations

import time
import socket

import pytest
from ipvshelpers import ipvsadm

from virtserve.engine.ipvs import listing
from virtserve.engine.ipvs.client import NetlinkError
from virtserve.engine.ipvs.table import (
    FWD_MASQ, FWD_ROUTE, FWD_TUNNEL, SVC_F_ONEPACKET, SVC_F_PERSISTENT, Destination, KernelTimeouts,
    SyncDaemon, VirtualService, sched_flags,
)

pytestmark = pytest.mark.timeout(300)

TCP, UDP = socket.IPPROTO_TCP, socket.IPPROTO_UDP

SERVICES = [
    (VirtualService(TCP, "192.168.7.1", 80, scheduler="rr"),
     [Destination("10.0.0.2", 8080, weight=3, forward=FWD_MASQ)]),
    (VirtualService(TCP, "10.9.9.9", 81, scheduler="sh", timeout=600, netmask=24,
                    flags=SVC_F_PERSISTENT | sched_flags("sh", {"sh-port": True, "sh-fallback": True})),
     [Destination("10.0.0.3", 81, forward=FWD_ROUTE, u_threshold=100, l_threshold=10),
      Destination("10.0.0.4", 81, weight=0, forward=FWD_TUNNEL),
      Destination("200.0.0.4", 81, weight=5, forward=FWD_MASQ)]),
    (VirtualService(UDP, "10.9.9.9", 53, scheduler="mh", flags=SVC_F_ONEPACKET | sched_flags("mh", {"mh-port": 1})),
     [Destination("10.0.0.2", 53)]),
    (VirtualService(UDP, "10.9.9.9", 54, scheduler="wlc", flags=SVC_F_PERSISTENT | SVC_F_ONEPACKET, timeout=30), []),
    (VirtualService(0, fwmark=7, scheduler="wlc"), [Destination("10.0.0.5", 0, forward=FWD_ROUTE)]),
    (VirtualService(TCP, "fd00::1", 443, af=socket.AF_INET6, scheduler="lc", flags=SVC_F_PERSISTENT,
                    timeout=60, netmask=64),
     [Destination("fd00::2", 443, weight=2)]),
]


def test_every_kind_reads_back_as_written_and_as_ipvsadm_lists_it(ipvs):
    for svc, dests in SERVICES:
        ipvs.add_service(svc)
        for dest in dests:
            ipvs.add_dest(svc, dest)
    table = ipvs.table()
    assert sorted((svc.describe(), svc, sorted(dests, key=str)) for svc, dests in table) == \
        sorted((svc.describe(), svc, sorted(dests, key=str)) for svc, dests in SERVICES)
    version, size = ipvs.info()
    assert version >= 0x010200 and size > 0
    for flags in ((), ("--stats",), ("--rate",), ("--stats", "--exact")):
        ours = listing.render(table, version, size, stats="--stats" in flags, rate="--rate" in flags,
                              exact="--exact" in flags)
        assert ours.splitlines() == ipvsadm("-Ln", *flags).splitlines()


def test_set_changes_in_place_and_delete_removes_only_what_is_named(ipvs):
    svc, (dest,) = SERVICES[0]
    ipvs.add_service(svc)
    ipvs.add_dest(svc, dest)
    other = VirtualService(TCP, "192.168.7.1", 8080, scheduler="wrr")
    ipvs.add_service(other)
    changed = VirtualService(TCP, "192.168.7.1", 80, scheduler="wlc", flags=SVC_F_PERSISTENT, timeout=120)
    ipvs.set_service(changed)
    ipvs.set_dest(changed, Destination("10.0.0.2", 8080, weight=9, forward=FWD_TUNNEL, u_threshold=7))
    table = dict(ipvs.table())
    assert table[changed] == [Destination("10.0.0.2", 8080, weight=9, forward=FWD_TUNNEL, u_threshold=7)]
    assert "TCP  192.168.7.1:80 wlc persistent 120" in ipvsadm("-Ln")
    ipvs.del_dest(changed, dest)
    assert dict(ipvs.table())[changed] == []
    ipvs.del_service(changed)
    assert [s for s, _ in ipvs.table()] == [other]
    with pytest.raises(NetlinkError):  # already gone: the kernel's ESRCH, not silence
        ipvs.del_service(changed)


def test_timeouts_and_sync_daemon(ipvs):
    before = ipvs.timeouts()
    ipvs.set_timeouts(KernelTimeouts(tcp=901, tcpfin=121, udp=301))
    try:
        assert ipvs.timeouts() == KernelTimeouts(901, 121, 301)
        assert ipvsadm("-Ln", "--timeout") == listing.render_timeouts(KernelTimeouts(901, 121, 301))
    finally:
        ipvs.set_timeouts(before)
    master = SyncDaemon("master", "lo", syncid=5)
    backup = SyncDaemon("backup", "lo", syncid=5)
    ipvs.start_daemon(master)
    ipvs.start_daemon(backup)
    try:
        daemons = ipvs.daemons()
        assert {(d.state, d.interface, d.syncid) for d in daemons} == {("master", "lo", 5), ("backup", "lo", 5)}
        assert listing.render_daemons(daemons) == ipvsadm("-Ln", "--daemon")
    finally:
        ipvs.stop_daemon(master)
        ipvs.stop_daemon(backup)
    for _ in range(50):  # the kernel threads stop asynchronously
        if not ipvs.daemons():
            break
        time.sleep(0.1)
    assert ipvs.daemons() == []
