"""rr: IPVS round robin (net/netfilter/ipvs/ip_vs_rr.c): the next available server after a cursor.

As the kernel: the cursor is the last server picked; a pick scans onward (wrapping once) for the
first available server. Departures, and why:
- The list is in config order; the kernel's is newest first (list_add at the head), so for the
  same servers the kernel walks them in the order they were added, reversed.
- A down server stays in the list and is skipped; the kernel has no "down" (a health checker
  deletes the destination or sets weight 0). Skipping it gives the same next pick as deleting it,
  and the cursor index stays valid, so no hook is needed.
- `avoid`: skipped while another server is available; returned when it is the only one (the
  caller decides). The cursor does not move when `avoid` is returned.
"""
from __future__ import annotations

from virtserve.schedulers._structures import walk
from virtserve.schedulers.base import PickContext, Scheduler, register


@register
class RoundRobin(Scheduler):
    name = "rr"

    def __init__(self, servers, options=None) -> None:
        super().__init__(servers, options)
        self._cursor = -1  # index of the last pick; -1 is the kernel's list head

    def pick(self, ctx: PickContext, avoid=None):
        servers = self.servers
        i = self._cursor + 1
        if i == len(servers):
            i = 0
        if avoid is None and servers:
            s = servers[i]  # the usual pick: the next server is available (Server.available, inline)
            if s.up and s.weight > 0 and (not s.maxconn or s.active < s.maxconn):
                self._cursor = i
                return s
        i, s = walk(servers, self._cursor, avoid)
        if i >= 0:
            self._cursor = i
        return s
