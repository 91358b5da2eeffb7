"""rr: IPVS round robin (ip_vs_rr.c): the next available server after a cursor."""
from __future__ import annotations

from virtserve.schedulers.base import PickContext, Scheduler, register


@register
class RoundRobin(Scheduler):
    name = "rr"

    def __init__(self, servers, options=None) -> None:
        super().__init__(servers, options)
        self._cursor = -1

    def pick(self, ctx: PickContext, avoid=None):
        servers = self.servers
        n = len(servers)
        fallback = None
        i = self._cursor
        for _ in range(n):
            i = i + 1 if i + 1 < n else 0
            s = servers[i]
            if s.available:
                if s is avoid:
                    fallback = fallback or s
                    continue
                self._cursor = i
                return s
        return fallback
