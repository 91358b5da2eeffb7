"""Schedulers whose pick is "the eligible server with the least key, first in list order on ties":
lc, wlc, sed, nq (its queue part), fo, ovf, first, leastconn.

Two ways to the same answer, chosen by the number of servers:
- below `scan-below` servers (an option; default SCAN_BELOW, 16) the pick is the kernel's own list scan,
  transcribed (`scan()`), and the take/drop/up/down/weight hooks do nothing: at ten servers a
  scan costs less than keeping any structure current;
- from there on a KeyedHeap holds the eligible servers: a take (the key grows) costs nothing
  until the server reaches the top, where it is re-sifted; a drop, up, down or weight change
  re-keys the one server it concerns. A pick is O(log n) amortised and returns what the scan
  returns (the property tests run both against a transcription of the kernel's rule).
"""
from __future__ import annotations

from typing import Any, ClassVar

from virtserve.schedulers._structures import KeyedHeap
from virtserve.schedulers.base import PickContext, Scheduler

# Servers below which the scan beats the heap: pick_cost (CPU ns per pick+take+drop) puts the
# crossing at 16 servers for lc and wlc (the scan grows ~70-100 ns per server, the heap costs
# ~1.2 us over the bookkeeping floor whatever the size) and at about 12 for leastconn.
SCAN_BELOW = 16


def _nothing(s) -> None:
    pass


class HeapScheduler(Scheduler):
    """Subclasses define key(s) (compared before list position), scan(avoid) (the kernel's rule
    over the list) and may narrow eligible(s)."""

    scan_below: ClassVar[int] = SCAN_BELOW
    # True: take() does nothing and the heap re-keys a grown key at its top. A class whose key
    # costs more than a push (leastconn's) updates on take instead.
    lazy_take: ClassVar[bool] = True

    def __init__(self, servers, options=None) -> None:
        super().__init__(servers, options)
        self._scanning = len(self.servers) < int(self.options.get("scan-below", self.scan_below))
        if self._scanning:
            self._heap = None
            self._least = self.scan
            self._update = _nothing
        else:
            self._heap = KeyedHeap(self.servers, self.key, self.eligible, self.lazy_take)
            self._least = self._heap.first
            self._update = self._heap.update
        # The plain cases bound on the instance: a pick and a hook are one call, not two.
        cls = type(self)
        if cls.pick is HeapScheduler.pick:
            self.pick = self._scan_pick if self._scanning else self._heap_pick
        if cls._changed is HeapScheduler._changed:
            self.drop = self.up = self.down = self.weight = self._update
            if cls.take is HeapScheduler.take:
                self.take = _nothing

    @staticmethod
    def key(s) -> Any:
        raise NotImplementedError

    @staticmethod
    def eligible(s) -> bool:
        return s.available

    def scan(self, avoid=None):
        raise NotImplementedError

    def pick(self, ctx: PickContext, avoid=None):
        return self._least(avoid)

    def _scan_pick(self, ctx: PickContext, avoid=None):
        return self.scan(avoid)

    def _heap_pick(self, ctx: PickContext, avoid=None):
        return self._heap.first(avoid)  # type: ignore[union-attr]

    def _changed(self, s) -> None:
        self._update(s)

    drop = up = down = weight = _changed

    def take(self, s) -> None:
        """More load only makes a key grow: the heap notices at its top (see KeyedHeap)."""


def overhead(s) -> int:
    """ip_vs_dest_conn_overhead: active connections weigh 256 inactive ones."""
    return (s.active << 8) + s.inactive


def scan_wlc(servers, avoid=None, sed: bool = False):
    """ip_vs_wlc.c's loop (ip_vs_sed.c's with sed: overhead = active + 1): the first available
    server with the least overhead / weight, by the kernel's cross-multiplication (switch when
    loh * w > doh * lw). `avoid` only when it is the only one."""
    least = spare = None
    loh = lw = 0
    for s in servers:
        w = s.weight
        if w <= 0 or not s.up or (s.maxconn and s.active >= s.maxconn):
            continue
        if s is avoid:
            spare = s
            continue
        doh = s.active + 1 if sed else (s.active << 8) + s.inactive
        if least is None or loh * w > doh * lw:
            least, loh, lw = s, doh, w
    return least if least is not None else spare
