"""Incremental structures the algorithms share: a keyed heap with lazy updates, and a Fenwick
tree of weights for weighted random draws. Both O(log n) per update and per pick."""
from __future__ import annotations

from heapq import heapify, heappop, heappush, heapreplace
from typing import Any, Callable, Sequence


class KeyedHeap:
    """The eligible servers ordered by key(s), then by list position (ties: first in list order).

    Entries are (key, position, version). A key that only grows (a take: more load, a later
    virtual time) needs no hook: the top entry's key is compared with key(s) at each look, and a
    grown one is re-sifted in place (heapreplace), so the only live entry of every server is a
    lower bound of its key and the top, once checked, is the true least. Anything else (a drop,
    up, down, weight) calls update(), which pushes a fresh entry and bumps the server's version;
    entries of an old version are popped when they reach the top (lazy deletion), and the heap is
    compacted when stale entries outnumber live ones. O(log n) amortised per pick and per update.
    """

    __slots__ = ("servers", "key", "eligible", "pos", "ver", "heap", "limit", "lazy")

    def __init__(self, servers: Sequence[Any], key: Callable[[Any], Any], eligible: Callable[[Any], bool],
                 lazy: bool = True) -> None:
        self.servers = servers
        self.key = key
        self.eligible = eligible
        self.lazy = lazy  # False: every change comes through update(), the top is not re-keyed
        self.pos = {id(s): i for i, s in enumerate(servers)}
        self.ver = [0] * len(servers)
        self.limit = 2 * len(servers) + 32
        self.rebuild()

    def rebuild(self) -> None:
        key, ver, eligible = self.key, self.ver, self.eligible
        self.heap = [(key(s), i, ver[i]) for i, s in enumerate(self.servers) if eligible(s)]
        heapify(self.heap)

    def update(self, s: Any) -> None:
        i = self.pos.get(id(s))
        if i is None:
            return
        ver = self.ver
        v = ver[i] = ver[i] + 1
        if self.eligible(s):
            heap = self.heap
            heappush(heap, (self.key(s), i, v))
            if len(heap) > self.limit:
                self.compact()

    def compact(self) -> None:
        """Drop the stale entries. The live ones keep their keys (no key is computed again, so a
        key that carries a turn, as leastconn's, keeps its place among equals)."""
        ver = self.ver
        self.heap = [e for e in self.heap if e[2] == ver[e[1]]]
        heapify(self.heap)

    def _top(self):
        heap, ver, servers, eligible, key = self.heap, self.ver, self.servers, self.eligible, self.key
        while heap:
            entry = heap[0]
            i = entry[1]
            if entry[2] != ver[i]:
                heappop(heap)
                continue
            s = servers[i]
            if not eligible(s):  # became full (or changed without its hook): out until an update
                heappop(heap)
                ver[i] += 1
                continue
            if self.lazy:
                k = key(s)
                if k != entry[0]:  # grew since it was pushed: re-sift with its key now
                    heapreplace(heap, (k, i, entry[2]))
                    continue
            return entry
        return None

    def first(self, avoid: Any = None) -> Any:
        """The least eligible server; `avoid` only when it is the only one."""
        entry = self._top()
        if entry is None:
            return None
        s = self.servers[entry[1]]
        if s is not avoid:
            return s
        heappop(self.heap)
        nxt = self._top()
        heappush(self.heap, entry)
        return s if nxt is None else self.servers[nxt[1]]


class Fenwick:
    """Prefix sums of non-negative integer weights; `find(r)` is the first index whose prefix sum
    reaches r (r >= 1)."""

    __slots__ = ("n", "tree", "values", "total", "top")

    def __init__(self, values: Sequence[int]) -> None:
        n = self.n = len(values)
        self.values = list(values)
        tree = [0] * (n + 1)
        for i, v in enumerate(values, 1):
            tree[i] += v
            j = i + (i & -i)
            if j <= n:
                tree[j] += tree[i]
        self.tree = tree
        self.total = sum(values)
        top = 1
        while top * 2 <= n:
            top *= 2
        self.top = top

    def set(self, i: int, value: int) -> None:
        delta = value - self.values[i]
        if not delta:
            return
        self.values[i] = value
        self.total += delta
        tree, n = self.tree, self.n
        i += 1
        while i <= n:
            tree[i] += delta
            i += i & -i

    def find(self, r: int) -> int:
        """Smallest index i with values[0] + ... + values[i] >= r."""
        tree, n = self.tree, self.n
        pos = 0
        step = self.top
        while step:
            nxt = pos + step
            if nxt <= n and tree[nxt] < r:
                pos = nxt
                r -= tree[nxt]
            step >>= 1
        return pos


def walk(table: Sequence[Any], after: int, avoid: Any = None) -> tuple[int, Any]:
    """One lap over `table` from the slot after `after`: (slot, server) of the first available
    server other than `avoid`; else (-1, avoid) when avoid was the only available one, or
    (-1, None)."""
    n = len(table)
    fallback = None
    i = after
    for _ in range(n):
        i = i + 1 if i + 1 < n else 0
        s = table[i]
        if s.available:
            if s is avoid:
                fallback = s
                continue
            return i, s
    return -1, fallback
