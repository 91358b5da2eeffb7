"""wrr: IPVS interleaved weighted round robin (net/netfilter/ipvs/ip_vs_wrr.c).

di = gcd of the positive weights (1 if none), mw = max weight - (di - 1), current weight cw starts
at mw. A pick scans onward from the last pick for an available server with weight >= cw; at the end
of the list cw -= di, and when cw <= 0 it goes back to mw. Because mw = max - (di - 1), the last
pass runs at cw == 1 and so tries every available server. Weights 4,3,2 give A A B A B C A B C.

di and mw are recomputed on up/down/weight events only, as the kernel's dest_changed does, which also
puts the cursor back at the list head and keeps cw in step: cw = mw if cw > mw or cw == 0, else
(cw // di) * di + 1 when di > 1.

Departures, and why:
- The list is in config order; the kernel's is newest first (list_add at the head).
- A down server counts as deleted from the kernel's list (what a health checker without
  quiescent does): it is left out of gcd/max and skipped. A server at maxconn counts as the
  kernel's OVERLOAD: still in gcd/max, skipped at pick time.
- The kernel ends a fruitless scan with its stop/last_pass bookkeeping; this one bounds it by
  list length * (passes + 1), which covers a full cw == 1 pass from any start. On failure the
  cursor is left where it was (the kernel leaves it where the scan stopped).
- `avoid`: skipped while another server qualifies (it loses that turn); returned when it is the
  only available one (the caller decides), without moving the cursor.
"""
from __future__ import annotations

from math import gcd

from virtserve.schedulers.base import PickContext, Scheduler, register


@register
class WeightedRoundRobin(Scheduler):
    name = "wrr"

    def __init__(self, servers, options=None) -> None:
        super().__init__(servers, options)
        self._i = -1  # the kernel's mark->cl: index of the last pick, -1 for the list head
        self._cw = 0
        self._recompute()
        self._cw = self._mw

    def _recompute(self) -> None:
        g = mx = 0
        for s in self.servers:
            if s.up and s.weight > 0:
                g = gcd(g, s.weight)  # gcd(0, w) == w
                mx = max(mx, s.weight)
        self._di = di = g or 1
        self._mw = mx - (di - 1)  # 0 when no up server has weight: nothing to pick

    def _changed(self, s=None) -> None:
        # ip_vs_wrr_dest_changed: restart from the head, keep cw on the new di grid.
        self._i = -1
        self._recompute()
        mw, di, cw = self._mw, self._di, self._cw
        if cw > mw or not cw:
            cw = mw
        elif di > 1:
            cw = (cw // di) * di + 1
        self._cw = cw

    up = down = weight = _changed

    def pick(self, ctx: PickContext, avoid=None):
        mw = self._mw
        if mw <= 0:
            return None
        servers = self.servers
        n = len(servers)
        di, i, cw = self._di, self._i, self._cw
        avoided = False
        for _ in range(n * ((mw - 1) // di + 2)):
            i += 1
            if i >= n:  # end of the list: next pass at a lower weight
                i = 0
                cw -= di
                if cw <= 0:
                    cw = mw
            s = servers[i]
            if s.weight >= cw and s.available:
                if s is avoid:
                    avoided = True
                    continue
                self._i, self._cw = i, cw
                return s
        return avoid if avoided else None
