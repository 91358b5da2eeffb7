"""wlc: IPVS weighted least connection (net/netfilter/ipvs/ip_vs_wlc.c).

overhead = active * 256 + inactive (ip_vs_dest_conn_overhead); the pick is the available server
with the least overhead / weight, compared by cross-multiplying as the kernel does (no division):
the scan switches from `least` to d only when loh * w_d > doh * w_least, so ties go to the first
in list order. Weight 0 and unavailable servers are never picked. The load is read live, so the
take/drop/up/down/weight hooks have nothing to maintain.

Departures, and why:
- The list is in config order, so ties favour the first server in the config. The kernel's list
  is newest first (list_add at the head), so its ties favour the most recently added server.
- Python ints do not overflow, so the kernel's 64-bit cast is not needed.
- `avoid`: skipped while another server is available; returned when it is the only one (the
  caller decides).
- An O(n) scan like the kernel's; a later issue makes it O(log n).
"""
from __future__ import annotations

from virtserve.schedulers.base import PickContext, Scheduler, register


@register
class WeightedLeastConnection(Scheduler):
    name = "wlc"

    def pick(self, ctx: PickContext, avoid=None):
        least = None
        loh = lw = 0
        avoided = False
        for s in self.servers:
            if not s.available:
                continue
            if s is avoid:
                avoided = True
                continue
            doh = (s.active << 8) + s.inactive
            w = s.weight
            if least is None or loh * w > doh * lw:
                least, loh, lw = s, doh, w
        if least is None and avoided:
            return avoid
        return least
