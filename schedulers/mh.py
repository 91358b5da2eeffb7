"""mh: IPVS Maglev hashing (net/netfilter/ipvs/ip_vs_mh.c), and dh: destination hashing (ip_vs_dh.c).

mh, as the kernel: a lookup table of 4093 slots (CONFIG_IP_VS_MH_TAB_INDEX 12; `table-size` picks
another of the kernel's primes). Each destination gets offset = hsiphash(addr + port, hash1) % M
and skip = hsiphash(addr + port, hash2) % (M - 1) + 1 with the kernel's fixed keys
(hash1 = {2654435761, 2654435761}, hash2 = {2654446892, 2654446892}); hsiphash is SipHash-1-3 on
one u32, as on a 64-bit kernel. turns = ((last_weight / gcd) >> rshift) or (last_weight != 0),
rshift = max(0, fls(max_weight / gcd) - 6); ip_vs_mh_populate then deals slots round and round,
each destination taking `turns` preferred free slots per round. A client maps to slot
hsiphash(saddr [+ sport with mh-port], hash1) % M. The slot's server if available, else None, or
with "mh-fallback" the kernel's probe: slot hsiphash(v, roffset) for roffset = ihash + 0, 1, ...
last_weight is the last non-zero weight: a quiesced (weight 0) server keeps its slots and lookups
that land there fail (or fall back). Rebuilt on up/down/weight only; a pick is O(1).

dh, as the kernel: 256 buckets dealt round robin over the destinations (weights ignored),
bucket = (daddr * 2654435761) & 255 where daddr is the local address the client connected to;
the bucket's server when available, else None (no fallback in the kernel).

Departures (both): the list is in config order, the kernel's newest first; a down server counts
as deleted (no slots), a weight-0 or full server stays and is unavailable. `avoid` is never
returned (the fallback probe skips it). More servers than slots is refused, as the kernel does.
"""
from __future__ import annotations

from functools import lru_cache
from math import gcd

from virtserve.schedulers.base import Needs, PickContext, Scheduler, register
from virtserve.schedulers.sh import addr_fold

PRIMES = (251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071)
TAB_SIZE = 4093
TAB_BITS = 6  # CONFIG_IP_VS_MH_TAB_INDEX / 2
KEY1 = 2654435761
KEY2 = 2654446892
M64 = (1 << 64) - 1


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & M64


def hsiphash_u32(value: int, k0: int, k1: int) -> int:
    """The kernel's hsiphash(&v, 4, key) on a 64-bit build: SipHash-1-3, truncated to u32."""
    v0 = 0x736F6D6570736575 ^ k0
    v1 = 0x646F72616E646F6D ^ k1
    v2 = 0x6C7967656E657261 ^ k0
    v3 = 0x7465646279746573 ^ k1
    b = (4 << 56) | (value & 0xFFFFFFFF)
    v3 ^= b
    for r in range(4):
        if r == 1:
            v0 ^= b
            v2 ^= 0xFF
        v0 = (v0 + v1) & M64
        v1 = _rotl(v1, 13) ^ v0
        v0 = _rotl(v0, 32)
        v2 = (v2 + v3) & M64
        v3 = _rotl(v3, 16) ^ v2
        v0 = (v0 + v3) & M64
        v3 = _rotl(v3, 21) ^ v0
        v2 = (v2 + v1) & M64
        v1 = _rotl(v1, 17) ^ v2
        v2 = _rotl(v2, 32)
    return (v0 ^ v1 ^ v2 ^ v3) & 0xFFFFFFFF


def mh_hashkey(ip: str, port: int, key: int, offset: int = 0) -> int:
    return hsiphash_u32((offset + (port & 0xFFFF) + addr_fold(ip)) & 0xFFFFFFFF, key, key)


@lru_cache(maxsize=8192)
def _client_slot(ip: str, port: int, size: int) -> int:
    return mh_hashkey(ip, port, KEY1) % size


@register
class MaglevHash(Scheduler):
    name = "mh"
    needs = Needs.ADDRESS

    def __init__(self, servers, options=None) -> None:
        super().__init__(servers, options)
        self._port = bool(self.options.get("mh-port"))
        self._fallback = bool(self.options.get("mh-fallback"))
        size = int(self.options.get("table-size", TAB_SIZE))
        if size not in PRIMES:
            raise ValueError(f"mh table-size must be one of {', '.join(map(str, PRIMES))}, got {size}")
        if len(self.servers) > size:
            raise ValueError(f"mh: {len(self.servers)} servers do not fit a table of {size} slots (table-size)")
        self._size = size
        self._last_weight = {id(s): s.weight for s in self.servers}
        self._setup = {id(s): (mh_hashkey(s.address, s.port, KEY1) % size,
                               mh_hashkey(s.address, s.port, KEY2) % (size - 1) + 1) for s in self.servers}
        self._rebuild()

    def _rebuild(self, s=None) -> None:
        if s is not None and s.weight > 0:
            self._last_weight[id(s)] = s.weight
        size = self._size
        members = [x for x in self.servers if x.up]
        weights = [self._last_weight[id(x)] for x in members]
        g = 0
        for w in weights:
            if w > 0:
                g = gcd(g, w)
        table: list = [None] * size
        self._table = table
        if g < 1:
            return
        rshift = max(0, (max(weights) // g).bit_length() - TAB_BITS)
        turns = [((w // g) >> rshift) or int(w != 0) for w in weights]
        perm = [self._setup[id(x)][0] for x in members]
        skips = [self._setup[id(x)][1] for x in members]
        taken = bytearray(size)
        n = 0
        while True:
            for d, x in enumerate(members):
                t = turns[d]
                for _ in range(t):
                    c = perm[d]
                    while taken[c]:
                        c += skips[d]
                        if c >= size:
                            c -= size
                    perm[d] = c
                    taken[c] = 1
                    table[c] = x
                    n += 1
                    if n == size:
                        return

    up = down = weight = _rebuild

    def pick(self, ctx: PickContext, avoid=None):
        size = self._size
        port = ctx.client_port if self._port else 0
        ihash = _client_slot(ctx.client_ip, port, size)
        table = self._table
        s = table[ihash]
        if s is None:
            return None
        if s.available and s is not avoid:
            return s
        if not self._fallback:
            return None
        for offset in range(size):
            s = table[mh_hashkey(ctx.client_ip, port, KEY1, (offset + ihash) % size) % size]
            if s.available and s is not avoid:
                return s
        return None


@register
class DestinationHash(Scheduler):
    name = "dh"
    needs = Needs.DEST

    def __init__(self, servers, options=None) -> None:
        super().__init__(servers, options)
        self._rebuild()

    def _rebuild(self, s=None) -> None:
        members = [x for x in self.servers if x.up]
        self._table = [members[i % len(members)] for i in range(256)] if members else [None] * 256

    up = down = weight = _rebuild

    def pick(self, ctx: PickContext, avoid=None):
        s = self._table[(addr_fold(ctx.dest_ip) * 2654435761) & 255]
        return s if s is not None and s.available and s is not avoid else None
