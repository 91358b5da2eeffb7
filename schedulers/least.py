"""The rest of the IPVS least-load family: below `scan-below` servers the kernel's list scan
itself, from there an O(log n) heap (heapsched.py) that returns what the scan returns (first in
list order on ties; the kernel's list is newest first, ours config order). Weight-0, down and
full (maxconn, the kernel's OVERLOAD) servers never picked.

- lc  (ip_vs_lc.c): least overhead = active * 256 + inactive, strict <, first wins; weight only
  decides eligibility (> 0).
- sed (ip_vs_sed.c): least (active + 1) / weight (inactive ignored), cross-multiplied.
- nq  (ip_vs_nq.c): the first eligible server with no active connection, else sed.
- fo  (ip_vs_fo.c): the eligible server with the highest weight, first wins.
- ovf (ip_vs_ovf.c): the highest weight among eligible servers whose active <= weight.
"""
from __future__ import annotations

from virtserve.schedulers._structures import KeyedHeap
from virtserve.schedulers.base import PickContext, register
from virtserve.schedulers.heapsched import HeapScheduler, overhead, scan_wlc


@register
class LeastConnection(HeapScheduler):
    name = "lc"
    key = staticmethod(overhead)

    def scan(self, avoid=None):
        least = spare = None
        loh = 0
        for s in self.servers:
            if s.weight <= 0 or not s.up or (s.maxconn and s.active >= s.maxconn):
                continue
            if s is avoid:
                spare = s
                continue
            doh = (s.active << 8) + s.inactive
            if least is None or doh < loh:
                least, loh = s, doh
        return least if least is not None else spare


@register
class ShortestExpectedDelay(HeapScheduler):
    name = "sed"

    @staticmethod
    def key(s):
        return (s.active + 1) / s.weight

    def scan(self, avoid=None):
        return scan_wlc(self.servers, avoid, sed=True)


def _idle(s) -> bool:
    return s.available and s.active == 0


def _zero(s) -> int:
    return 0


@register
class NeverQueue(ShortestExpectedDelay):
    """Two heaps: idle servers by list position, and every eligible server by sed's key."""

    name = "nq"

    def __init__(self, servers, options=None) -> None:
        super().__init__(servers, options)
        self._idle = None if self._scanning else KeyedHeap(self.servers, _zero, _idle)

    def scan(self, avoid=None):
        spare = None
        for s in self.servers:
            if not s.active and s.weight > 0 and s.up:  # idle: below any maxconn
                if s is not avoid:
                    return s
                spare = s
        return scan_wlc(self.servers, avoid, sed=True) or spare

    def pick(self, ctx: PickContext, avoid=None):
        if self._idle is None:
            return self.scan(avoid)
        s = self._idle.first(avoid)
        if s is not None and s is not avoid:
            return s
        return self._heap.first(avoid)  # type: ignore[union-attr]

    def _changed(self, s) -> None:
        if self._idle is not None:
            self._heap.update(s)  # type: ignore[union-attr]
            self._idle.update(s)

    drop = up = down = weight = _changed


@register
class WeightedFailover(HeapScheduler):
    name = "fo"

    @staticmethod
    def key(s):
        return -s.weight

    def scan(self, avoid=None):
        best = spare = None
        for s in self.servers:
            w = s.weight
            if w <= 0 or not s.up or (s.maxconn and s.active >= s.maxconn):
                continue
            if s is avoid:
                spare = s
            elif best is None or w > best.weight:
                best = s
        return best if best is not None else spare


@register
class WeightedOverflow(WeightedFailover):
    name = "ovf"
    work_conserving = False

    @staticmethod
    def eligible(s) -> bool:
        return s.available and s.active <= s.weight

    def scan(self, avoid=None):
        best = spare = None
        for s in self.servers:
            w = s.weight
            if w <= 0 or s.active > w or not s.up or (s.maxconn and s.active >= s.maxconn):
                continue
            if s is avoid:
                spare = s
            elif best is None or w > best.weight:
                best = s
        return best if best is not None else spare
