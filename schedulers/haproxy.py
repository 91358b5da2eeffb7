"""HAProxy's non-hashing algorithms (doc/configuration.txt "balance"; src/lb_fwrr.c, lb_map.c,
lb_fwlc.c, lb_fas.c). Effective weight is the user weight; a weight-0, down or full server is
never picked (HAProxy would queue on a full one; this proxy has no queue and moves on).

- roundrobin: dynamic weighted round robin, smoothly interleaved, weights change live and
  `slowstart` (seconds) ramps a server's weight up after it comes up. Each server carries a
  virtual time that advances by 1/weight on each pick (stride scheduling, the idea of
  lb_fwrr.c's position keys); the pick is the least virtual time, first in list order on ties.
  O(log n) per pick and per event.
- static-rr: lb_map.c's weighted map in HAProxy's slot order (weighted_map), walked by a
  cursor: O(1) per pick. Built from the weights at start and rebuilt on up/down only: runtime weight changes
  are ignored as in HAProxy, except that a weight-0 server is skipped and a server that
  started at weight 0 joins the map with its first non-zero weight.
- leastconn: least (inflight + 1) * 4096 // (weight * 16) (0 when idle: lb_fwlc.c's key), round
  robin among equal keys (a re-keyed server goes behind the others with its key). O(log n).
- first: the first server in config order with room below its maxconn (lb_fas.c). O(log n).
- random[(N)]: N weighted random draws (default 2), the least loaded (active / weight) wins.
  With `hash-type consistent` the draws are HAProxy's own: random 32-bit points looked up on
  the consistent ring (16 points per unit of weight), O(log points) per draw. Without it they
  use a Fenwick tree of weights: exact weight shares (the ring's arcs only approximate them),
  O(log n) per draw. HAProxy always draws on the ring.
"""
from __future__ import annotations

import itertools
import time
from math import gcd

from virtserve.schedulers._structures import KeyedHeap, walk
from virtserve.schedulers.base import PickContext, Scheduler, register
from virtserve.schedulers.heapsched import HeapScheduler
from virtserve.schedulers.twos import WeightedDraws

SCALE = 1 << 20  # virtual time per pick of a weight-1 server


@register
class HaproxyRoundRobin(Scheduler):
    name = "roundrobin"

    def __init__(self, servers, options=None) -> None:
        super().__init__(servers, options)
        self._clock = self.options.get("clock", time.monotonic)
        self._slowstart = float(self.options.get("slowstart", 0) or 0)
        self._warming: dict[int, float] = {}  # id(server) -> when it came up
        self._next_ramp = 0.0
        self._ew = {id(s): s.weight for s in self.servers}
        self._vt = {id(s): SCALE / (2 * s.weight) if s.weight > 0 else 0.0 for s in self.servers}
        self._now = 0.0  # virtual time of the last pick
        self._heap = KeyedHeap(self.servers, lambda s: self._vt[id(s)], self._eligible)

    def _eligible(self, s) -> bool:
        return s.available and self._ew[id(s)] > 0

    def _place(self, s) -> None:
        ew = self._ew[id(s)]
        if ew > 0:
            self._vt[id(s)] = self._now + SCALE / (2 * ew)
        self._heap.update(s)

    def _ramp(self, now: float) -> None:
        """slowstart: effective weight = weight * elapsed / slowstart (at least 1)."""
        done = []
        for key, since in self._warming.items():
            s = self._by_id(key)
            frac = (now - since) / self._slowstart
            if frac >= 1:
                done.append(key)
                ew = s.weight
            else:
                ew = max(1, int(s.weight * frac + 0.999999)) if s.weight > 0 else 0
            if ew != self._ew[key]:
                self._ew[key] = ew
                self._place(s)
        for key in done:
            del self._warming[key]
        self._next_ramp = now + self._slowstart / 16

    def _by_id(self, key: int):
        return self._heap.servers[self._heap.pos[key]]

    def pick(self, ctx: PickContext, avoid=None):
        if self._warming:
            now = self._clock()
            if now >= self._next_ramp:
                self._ramp(now)
        s = self._heap.first(avoid)
        if s is None or (s is avoid and avoid is not None):
            return s
        key = id(s)
        self._now = vt = self._vt[key]
        self._vt[key] = vt + SCALE / self._ew[key]  # grown: the heap re-sifts it at its next look
        return s

    def take(self, s) -> None:
        if s.maxconn and s.active >= s.maxconn:
            self._heap.update(s)

    def drop(self, s) -> None:
        if s.maxconn and s.active == s.maxconn - 1:
            self._heap.update(s)

    def up(self, s) -> None:
        if self._slowstart > 0 and s.weight > 0:
            self._warming[id(s)] = self._clock()
            self._ew[id(s)] = 1
            self._next_ramp = 0.0
        else:
            self._ew[id(s)] = s.weight
        self._place(s)

    def down(self, s) -> None:
        self._warming.pop(id(s), None)
        self._heap.update(s)

    def weight(self, s) -> None:
        if id(s) not in self._warming:
            self._ew[id(s)] = s.weight
        self._place(s)


# Above this many steps (servers x slots) the exact lb_map.c fill (O(n * total) in Python) gives
# way to smooth_map, which deals the same shares in O(total log n).
EXACT_MAP_STEPS = 200_000


def weighted_map(servers, weights, gcd_of=None) -> list:
    """The server map of HAProxy's map-based algorithms (static-rr, hash-type map-based).

    As lb_map.c: each weight is divided by the gcd of the configured weights (init_server_map's
    wmult; a later weight rounds up), then recalc_server_map fills `total` slots: every usable
    server adds its weight to a score, the first with the highest (score + total) / total takes
    the slot and pays total. Same slot order as HAProxy, so `hash % total` lands on the server
    HAProxy would pick. Past EXACT_MAP_STEPS it is smooth_map's order instead (same shares)."""
    g = 0
    for w in (gcd_of if gcd_of is not None else weights):
        if w > 0:
            g = gcd(g, w)
    g = g or 1
    members = [(s, -(-w // g)) for s, w in zip(servers, weights) if w > 0]
    total = sum(w for _, w in members)
    if len(members) * total > EXACT_MAP_STEPS:
        return smooth_map([s for s, _ in members], [w for _, w in members])
    ws = [w for _, w in members]
    n = len(ws)
    score = [0] * n
    out = []
    for _ in range(total):
        best, top = -1, 0
        for i in range(n):
            sc = score[i] = score[i] + ws[i]
            a = sc + total
            v = a // total if a >= 0 else -(-a // total)  # C division truncates toward zero
            if best < 0 or v > top:
                best, top = i, v
        out.append(members[best][0])
        score[best] -= total
    return out


def smooth_map(servers, weights) -> list:
    """Each server `weight` times, interleaved (stride order, ties to the first): O(total log n)."""
    from heapq import heapify, heapreplace

    heap = [(1 / (2 * w), i, w) for i, w in enumerate(weights) if w > 0]
    heapify(heap)
    out = []
    for _ in range(sum(weights)):
        t, i, w = heap[0]
        out.append(servers[i])
        heapreplace(heap, (t + 1 / w, i, w))
    return out


@register
class StaticRoundRobin(Scheduler):
    name = "static-rr"

    def __init__(self, servers, options=None) -> None:
        super().__init__(servers, options)
        self._weights = {id(s): s.weight for s in self.servers}  # start weights: fixed
        self._config_weights = [s.weight for s in self.servers]  # their gcd divides them all
        self._cursor = -1
        self._rebuild()

    def _rebuild(self, s=None) -> None:
        members = [x for x in self.servers if x.up]
        self._map = weighted_map(members, [self._weights[id(x)] for x in members], self._config_weights)

    up = down = _rebuild

    def weight(self, s) -> None:
        # Ignored, as HAProxy does, except for a server that started at 0: it joins the map.
        if not self._weights.get(id(s), 1) and s.weight > 0:
            self._weights[id(s)] = s.weight
            self._rebuild()

    def pick(self, ctx: PickContext, avoid=None):
        i, s = walk(self._map, self._cursor, avoid)
        if i >= 0:
            self._cursor = i
        return s


@register
class LeastConn(HeapScheduler):
    name = "leastconn"
    scan_below = 12  # its keys are tuples: the heap's crossing comes sooner (pick_cost)
    lazy_take = False  # a tuple key per look at the top costs more than a push per take

    def __init__(self, servers, options=None) -> None:
        if not hasattr(self, "_turn"):  # not when add/remove build it again: the turns stay
            self._seq = itertools.count()
            self._turn: dict[int, int] = {}  # scan mode: id(server) -> when it was last re-keyed
        for s in servers:
            self._turn.setdefault(id(s), next(self._seq))
        super().__init__(servers, options)

    def key(self, s):
        # The heap's key: a fresh turn at every push puts a re-keyed server behind its equals.
        n = s.active
        return ((n + 1) * 4096 // (s.weight * 16) if n else 0, next(self._seq))

    def _changed(self, s) -> None:
        if self._scanning:
            self._turn[id(s)] = next(self._seq)  # the scan's turns: behind the others with the same key
        else:
            self._update(s)

    take = drop = up = down = weight = _changed

    def scan(self, avoid=None):
        turn = self._turn
        best = spare = None
        bkey = (0, 0)
        for s in self.servers:
            w = s.weight
            if w <= 0 or not s.up or (s.maxconn and s.active >= s.maxconn):
                continue
            if s is avoid:
                spare = s
                continue
            n = s.active
            k = ((n + 1) * 4096 // (w * 16) if n else 0, turn[id(s)])
            if best is None or k < bkey:
                best, bkey = s, k
        return best if best is not None else spare


@register
class First(HeapScheduler):
    name = "first"

    @staticmethod
    def key(s):
        return 0  # list position decides

    def scan(self, avoid=None):
        spare = None
        for s in self.servers:
            if s.weight > 0 and s.up and (not s.maxconn or s.active < s.maxconn):
                if s is not avoid:
                    return s
                spare = s
        return spare


@register
class RandomDraws(WeightedDraws):
    name = "random"

    def __init__(self, servers, options=None) -> None:
        super().__init__(servers, options)
        self._draws = max(1, int(self.options.get("draws", 2)))
        self._ring = None
        if str(self.options.get("hash-type", "")).split()[:1] == ["consistent"]:
            from virtserve.schedulers.mapping import ConsistentRing  # mapping imports this module

            self._ring = ConsistentRing(self.servers)

    def _changed(self, s) -> None:
        super()._changed(s)
        if self._ring is not None:
            self._ring.rebuild(s)

    up = down = weight = _changed

    def pick(self, ctx: PickContext, avoid=None):
        ring = self._ring
        if ring is None:
            return super().pick(ctx, avoid)
        # get_server_rnd: each draw a 32-bit random number looked up on the consistent ring
        # (the nearest point, onward past unavailable servers and `avoid`); a later draw loses
        # to the best so far only when it is busier per weight.
        rand = self._rand
        best = None
        for _ in range(self._draws):
            s = ring.lookup(rand(1 << 32), avoid)
            if s is None:
                break
            if best is not None and best is not s and s.active * best.weight > best.active * s.weight:
                continue
            best = s
        return best

    def draw(self) -> int:
        """A draw in proportion to weight: r uniform in [1, total]."""
        tree = self._tree
        return tree.find(self._rand(tree.total) + 1)

    def choose(self):
        servers = self.servers
        best = servers[self.draw()]
        for _ in range(self._draws - 1):
            s = servers[self.draw()]
            if s is not best and s.active * best.weight <= best.active * s.weight:  # ties: the new draw
                best = s
        return best
