"""lblc and lblcr: IPVS locality-based least connection (ip_vs_lblc.c, ip_vs_lblcr.c), keyed by
the destination address the client asked for (the local address it connected to).

lblc: a cache destination address -> server. Reused while the server is available and not
"overloaded" (active > weight while some server has active * 2 < weight); else wlc over all
servers picks one and the cache remembers it. An entry unused for `expiration` seconds (24 h,
the kernel's sysctl lblc_expiration) is forgotten; past `max-entries` (16384 = the kernel's
table size * 16) entries unused for 6 minutes are swept.

lblcr: the cache holds a set of servers per address. The pick is the least loaded member
(wlc rule within the set); an overloaded or missing one adds wlc's choice to the set; a set of
more than one not modified for `expiration` seconds loses its most loaded member.

Cost: the wlc part is wlc.py's (a scan below 16 servers, an O(log n) heap from there); "some
server has active * 2 < weight" is a set kept by the hooks (O(1)); a set is scanned (sets stay small). Departures: as wlc (config
order, `avoid`), and a down server counts as deleted (it leaves the overload count).
"""
from __future__ import annotations

import time

from virtserve.schedulers.base import Needs, PickContext, register
from virtserve.schedulers.wlc import WeightedLeastConnection

ENTRY_TIMEOUT = 6 * 60.0
MAX_ENTRIES = 1024 * 16


class _Cached(WeightedLeastConnection):
    needs = Needs.DEST

    def __init__(self, servers, options=None) -> None:
        super().__init__(servers, options)
        self._clock = self.options.get("clock", time.monotonic)
        self._expiration = float(self.options.get("expiration", 24 * 3600.0))
        self._max_entries = int(self.options.get("max-entries", MAX_ENTRIES))
        self._cache: dict[str, list] = {}
        self._light: set[int] = {id(s) for s in self.servers if s.up and s.active * 2 < s.weight}

    def _changed(self, s) -> None:
        self._update(s)
        if s.up and s.active * 2 < s.weight:
            self._light.add(id(s))
        else:
            self._light.discard(id(s))

    take = drop = up = down = weight = _changed

    def _overloaded(self, s) -> bool:
        return s.active > s.weight and bool(self._light)

    def _entry(self, key: str, now: float):
        en = self._cache.get(key)
        if en is not None and now - en[0] > self._expiration:
            del self._cache[key]
            return None
        return en

    def _store(self, key: str, value, now: float) -> None:
        cache = self._cache
        if len(cache) >= self._max_entries:
            for k in [k for k, en in cache.items() if now - en[0] > ENTRY_TIMEOUT]:
                del cache[k]
            if len(cache) >= self._max_entries:  # still full: forget the oldest
                del cache[next(iter(cache))]
        cache[key] = value


@register
class LocalityLeastConnection(_Cached):
    name = "lblc"

    def pick(self, ctx: PickContext, avoid=None):
        now = self._clock()
        en = self._entry(ctx.dest_ip, now)
        if en is not None:
            en[0] = now
            s = en[1]
            if s.available and s is not avoid and not self._overloaded(s):
                return s
        s = self._least(avoid)
        if s is not None and s is not avoid:
            self._store(ctx.dest_ip, [now, s], now)
        return s


@register
class LocalityLeastConnectionReplicated(_Cached):
    name = "lblcr"

    def pick(self, ctx: PickContext, avoid=None):
        now = self._clock()
        en = self._entry(ctx.dest_ip, now)  # [lastuse, lastmod, members newest first]
        if en is not None:
            en[0] = now
            members = en[2]
            s = _least(members, avoid)
            if len(members) > 1 and now - en[1] > self._expiration:
                most = _most(members)
                if most is not None:
                    members.remove(most)
                    en[1] = now
            if s is not None and not self._overloaded(s):
                return s
        s = self._least(avoid)
        if s is None or s is avoid:
            return s
        if en is None:
            self._store(ctx.dest_ip, [now, now, [s]], now)
        elif s not in en[2]:
            en[2].insert(0, s)
            en[1] = now
        return s


def _least(members, avoid):
    """ip_vs_dest_set_min: the first least overhead/weight among available members."""
    least = None
    loh = 0
    for d in members:
        if not d.available or d is avoid:
            continue
        doh = (d.active << 8) + d.inactive
        if least is None or loh * d.weight > doh * least.weight:
            least, loh = d, doh
    return least


def _most(members):
    """ip_vs_dest_set_max: the most loaded member with weight > 0."""
    most = None
    moh = 0
    for d in members:
        if d.weight <= 0:
            continue
        doh = (d.active << 8) + d.inactive
        if most is None or doh * most.weight > moh * d.weight:
            most, moh = d, doh
    return most
