"""wlc: IPVS weighted least connection (net/netfilter/ipvs/ip_vs_wlc.c).

overhead = active * 256 + inactive (ip_vs_dest_conn_overhead); the pick is the available server
with the least overhead / weight. The kernel scans the list and switches from `least` to d only
when loh * w_d > doh * w_least, so the answer is the first server (in list order) with the least
ratio. Weight 0 and unavailable servers are never picked.

Cost: below `scan-below` servers (16) the kernel's scan itself; from there O(log n): the eligible
servers sit in a heap keyed (overhead / weight, list position), a take is noticed at the top,
drop/up/down/weight re-key the one server concerned (see heapsched.py). The ratio is a
float: IEEE division is correctly rounded, so equal ratios give equal floats and distinct ones
(they differ by at least 1/(w1*w2)) stay ordered while overhead < 2**35, i.e. fewer than 2**27
connections on one server.

Departures, and why:
- The list is in config order, so ties favour the first server in the config. The kernel's list
  is newest first (list_add at the head), so its ties favour the most recently added server.
- `avoid`: skipped while another server is available; returned when it is the only one (the
  caller decides).
- The load is taken from the hooks (the Backend calls them on every change); a server whose
  availability changed without a hook is dropped from the heap at its next turn at the top.
"""
from __future__ import annotations

from virtserve.schedulers.base import register
from virtserve.schedulers.heapsched import HeapScheduler, scan_wlc


@register
class WeightedLeastConnection(HeapScheduler):
    name = "wlc"

    @staticmethod
    def key(s):
        return ((s.active << 8) + s.inactive) / s.weight

    def scan(self, avoid=None):
        return scan_wlc(self.servers, avoid)
