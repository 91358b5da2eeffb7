"""Schedulers whose pick is "the eligible server with the least key, first in list order on ties":
lc, wlc, sed, nq (its queue part), fo, ovf, first, leastconn. The kernel scans the list (O(n));
here a KeyedHeap holds the eligible servers and every event re-keys the one server it concerns,
so a pick is O(log n) amortised and returns what the kernel's scan returns.
"""
from __future__ import annotations

from typing import Any

from virtserve.schedulers._structures import KeyedHeap
from virtserve.schedulers.base import PickContext, Scheduler


class HeapScheduler(Scheduler):
    """Subclasses define key(s) (compared before list position) and may narrow eligible(s)."""

    def __init__(self, servers, options=None) -> None:
        super().__init__(servers, options)
        self._heap = KeyedHeap(self.servers, self.key, self.eligible)

    @staticmethod
    def key(s) -> Any:
        raise NotImplementedError

    @staticmethod
    def eligible(s) -> bool:
        return s.available

    def pick(self, ctx: PickContext, avoid=None):
        return self._heap.first(avoid)

    def _changed(self, s) -> None:
        self._heap.update(s)

    take = drop = up = down = weight = _changed


def overhead(s) -> int:
    """ip_vs_dest_conn_overhead: active connections weigh 256 inactive ones."""
    return (s.active << 8) + s.inactive
