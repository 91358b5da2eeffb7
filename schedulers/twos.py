"""twos: IPVS weighted random twos choice (ip_vs_twos.c), and the Fenwick draws it rests on.

As the kernel: two independent draws r1, r2 uniform in [0, total weight] (inclusive: the kernel
adds 1 to the total, so r = 0 and r = 1 both select the first server, which draws with weight
w + 1 out of total + 1), each selecting the first eligible server whose running weight sum reaches
it; the second replaces the first when weight2 * overhead1 > weight1 * overhead2 (overhead =
active * 256 + inactive). Eligible: weight > 0 and not full (down counts as deleted).

Cost: O(log n) per pick: the weights of eligible servers sit in a Fenwick tree that the hooks
update. `seed` makes the draws repeatable (tests). `avoid` is drawn around (its weight is taken
out for that pick) and returned only when it is the only eligible server.
"""
from __future__ import annotations

import random

from virtserve.schedulers._structures import Fenwick
from virtserve.schedulers.base import PickContext, Scheduler, register


class WeightedDraws(Scheduler):
    """A Fenwick tree of the eligible servers' weights, kept current by the hooks."""

    def __init__(self, servers, options=None) -> None:
        super().__init__(servers, options)
        self._pos = {id(s): i for i, s in enumerate(self.servers)}
        self._tree = Fenwick([self._w(s) for s in self.servers])
        seed = self.options.get("seed")
        self._rand = random.Random(seed).randrange if seed is not None else random.randrange

    @staticmethod
    def _w(s) -> int:
        return s.weight if s.available else 0

    def _changed(self, s) -> None:
        i = self._pos.get(id(s))
        if i is not None:
            self._tree.set(i, self._w(s))

    take = drop = up = down = weight = _changed

    def draw(self) -> int:
        """One kernel-style draw: r uniform in [0, total]; index of the first prefix sum >= r."""
        tree = self._tree
        r = self._rand(tree.total + 1)
        return tree.find(r if r > 0 else 1)

    def pick(self, ctx: PickContext, avoid=None):
        tree = self._tree
        i = self._pos.get(id(avoid)) if avoid is not None else None
        saved = 0
        if i is not None:
            saved = tree.values[i]
            if saved and saved == tree.total:
                return avoid if avoid.available else None
            tree.set(i, 0)
        try:
            if tree.total <= 0:
                return None
            return self.choose()
        finally:
            if saved:
                tree.set(i, saved)

    def choose(self):
        raise NotImplementedError


@register
class TwosChoice(WeightedDraws):
    name = "twos"

    def choose(self):
        servers = self.servers
        c1, c2 = servers[self.draw()], servers[self.draw()]
        oh1 = (c1.active << 8) + c1.inactive
        oh2 = (c2.active << 8) + c2.inactive
        return c2 if c2.weight * oh1 > c1.weight * oh2 else c1
