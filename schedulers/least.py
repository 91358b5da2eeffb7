"""The rest of the IPVS least-load family, each an O(log n) heap (heapsched.py) that returns what
the kernel's list scan returns (first in list order on ties; the kernel's list is newest first,
ours config order). Weight-0, down and full (maxconn, the kernel's OVERLOAD) servers never picked.

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
from virtserve.schedulers.heapsched import HeapScheduler, overhead


@register
class LeastConnection(HeapScheduler):
    name = "lc"
    key = staticmethod(overhead)


@register
class ShortestExpectedDelay(HeapScheduler):
    name = "sed"

    @staticmethod
    def key(s):
        return (s.active + 1) / s.weight


@register
class NeverQueue(ShortestExpectedDelay):
    """Two heaps: idle servers by list position, and every eligible server by sed's key."""

    name = "nq"

    def __init__(self, servers, options=None) -> None:
        super().__init__(servers, options)
        self._idle = KeyedHeap(self.servers, lambda s: 0, lambda s: s.available and s.active == 0)

    def pick(self, ctx: PickContext, avoid=None):
        s = self._idle.first(avoid)
        if s is not None and s is not avoid:
            return s
        return self._heap.first(avoid)

    def _changed(self, s) -> None:
        self._heap.update(s)
        self._idle.update(s)

    take = drop = up = down = weight = _changed


@register
class WeightedFailover(HeapScheduler):
    name = "fo"

    @staticmethod
    def key(s):
        return -s.weight


@register
class WeightedOverflow(WeightedFailover):
    name = "ovf"
    work_conserving = False

    @staticmethod
    def eligible(s) -> bool:
        return s.available and s.active <= s.weight
