"""Key -> server, separate from how the key was found (keys.py): HAProxy's `hash-type`.

- WeightedMap (map-based, the default): lb_map.c's table, each usable server `weight / gcd`
  times in HAProxy's slot order (haproxy.weighted_map); server = table[hash % total]. O(1) lookup; rebuilt on
  up/down/weight (as HAProxy's recalc_server_map), and a change moves most keys.
- ConsistentRing (consistent): `weight * 16` points per server at full_hash(id * 4096 + node)
  (lb_chash.c); a key goes to the nearer of the points around its hash (ties to the one
  before). Adding or removing a server touches only its points: O(w log n), and only the keys
  near them move (about 1/N of them when one of N equal servers leaves).
A looked-up server that is unavailable (full) or `avoid` is passed over for the next one.
"""
from __future__ import annotations

from sortedcontainers import SortedList

from virtserve.schedulers._structures import walk
from virtserve.schedulers.haproxy import weighted_map
from virtserve.schedulers.hashfn import full_hash

NODES_PER_WEIGHT = 16  # BE_WEIGHT_SCALE
ID_RANGE = 4096  # SRV_EWGHT_RANGE


class WeightedMap:
    def __init__(self, servers) -> None:
        self.servers = servers
        self.config_weights = [s.weight for s in servers]
        self.rebuild()

    def rebuild(self, s=None) -> None:
        members = [x for x in self.servers if x.up and x.weight > 0]
        self.table = weighted_map(members, [x.weight for x in members], self.config_weights)

    def lookup(self, h: int, avoid=None):
        table = self.table
        n = len(table)
        if not n:
            return None
        return walk(table, h % n - 1, avoid)[1]


class ConsistentRing:
    def __init__(self, servers) -> None:
        self.servers = servers
        self.pos = {id(s): i for i, s in enumerate(servers)}
        self.placed: dict[int, int] = {}  # id(server) -> points on the ring
        self.ring = SortedList()
        for s in servers:
            self.rebuild(s)

    def rebuild(self, s=None) -> None:
        """Bring one server's points in line with its state (all of them when s is None)."""
        if s is None:
            for x in self.servers:
                self.rebuild(x)
            return
        i = self.pos.get(id(s))
        if i is None:
            return
        want = s.weight * NODES_PER_WEIGHT if s.up and s.weight > 0 else 0
        have = self.placed.get(id(s), 0)
        puid = i + 1
        ring = self.ring
        for node in range(have, want):
            ring.add((full_hash(puid * ID_RANGE + node), i))
        for node in range(want, have):
            ring.remove((full_hash(puid * ID_RANGE + node), i))
        self.placed[id(s)] = want

    def lookup(self, h: int, avoid=None):
        ring = self.ring
        n = len(ring)
        if not n:
            return None
        j = ring.bisect_left((h, -1))
        nxt = j if j < n else 0
        prv = j - 1  # -1 wraps to the last
        dp = (h - ring[prv][0]) & 0xFFFFFFFF
        dn = (ring[nxt][0] - h) & 0xFFFFFFFF
        k = prv % n if dp <= dn else nxt
        servers = self.servers
        fallback = None
        for _ in range(n):
            s = servers[ring[k][1]]
            if s.available:
                if s is not avoid:
                    return s
                fallback = s
            k = k + 1 if k + 1 < n else 0
        return fallback
