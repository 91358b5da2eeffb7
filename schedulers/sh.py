"""sh: IPVS source hashing (net/netfilter/ipvs/ip_vs_sh.c).

A 256-bucket table maps a hash of the client address to a server. ip_vs_sh_reassign fills it by
walking the list, each server taking `weight` consecutive buckets (weight 0 still takes one:
the kernel moves on when ++count >= weight) and wrapping until all 256 are full; with a total
weight over 256 the servers at the end get none. The table is rebuilt on up/down/weight events only.

Bucket (ip_vs_sh_hashkey): hash_32(port + addr, 8), hash_32(v, b) = (v * 0x61C88647 mod 2**32)
>> (32 - b) (include/linux/hash.h), port 0 unless "sh-port" (IP_VS_SVC_F_SCHED_SH_PORT), addr the
IPv4 address as a host-order u32, or for IPv6 the XOR of its four 32-bit words. Same address (and
port) -> same server while the set is unchanged.

The bucket's server is returned if available; else None, or with "sh-fallback"
(IP_VS_SVC_F_SCHED_SH_FALLBACK) the kernel's probe: for offset 0..255 the bucket
(offset + 2 * hash) & 255 (roffset = offset + hash is passed back into the hashkey as its offset),
first available wins.

Departures, and why:
- The list is in config order; the kernel's is newest first (list_add at the head), so its table
  has the same shares but a different bucket layout unless servers were added in reverse order.
- A down server counts as deleted from the kernel's list (what a health checker without
  quiescent does): it gets no buckets, so the table changes. A weight-0 server keeps its one
  bucket and a server at maxconn (the kernel's OVERLOAD) keeps its buckets; both are unavailable.
- An IPv4-mapped IPv6 address (::ffff:a.b.c.d, what a dual-stack socket reports for an IPv4
  client) hashes as the IPv4 address: the kernel would have seen an IPv4 packet. A zone suffix
  (%eth0) is ignored; an unparsable or empty address hashes as 0.
- `avoid` is never returned: when the bucket holds it, the answer is the fallback probe (which
  skips it) with "sh-fallback", else None. Re-sending the client to the server that just failed is
  the caller's decision.
"""
from __future__ import annotations

import socket
from functools import lru_cache

from virtserve.schedulers.base import Needs, PickContext, Scheduler, register

TAB_BITS = 8
TAB_SIZE = 1 << TAB_BITS
TAB_MASK = TAB_SIZE - 1
GOLDEN_RATIO_32 = 0x61C88647
_MAPPED_V4 = b"\0" * 10 + b"\xff\xff"


def hash_32(val: int, bits: int) -> int:
    return ((val * GOLDEN_RATIO_32) & 0xFFFFFFFF) >> (32 - bits)


@lru_cache(maxsize=4096)
def addr_fold(ip: str) -> int:
    """The address as ip_vs_sh_hashkey folds it, as a host-order u32."""
    try:
        if ":" not in ip:
            return int.from_bytes(socket.inet_pton(socket.AF_INET, ip), "big")
        b = socket.inet_pton(socket.AF_INET6, ip.partition("%")[0])
    except (OSError, ValueError):
        return 0
    if b[:12] == _MAPPED_V4:
        return int.from_bytes(b[12:], "big")
    a = int.from_bytes(b, "big")
    return (a ^ (a >> 32) ^ (a >> 64) ^ (a >> 96)) & 0xFFFFFFFF


def hashkey(ip: str, port: int = 0) -> int:
    """The bucket for a client (offset 0)."""
    return hash_32(((port & 0xFFFF) + addr_fold(ip)) & 0xFFFFFFFF, TAB_BITS)


@register
class SourceHash(Scheduler):
    name = "sh"
    needs = Needs.ADDRESS

    def __init__(self, servers, options=None) -> None:
        super().__init__(servers, options)
        self._port = bool(self.options.get("sh-port"))
        self._fallback = bool(self.options.get("sh-fallback"))
        self._rebuild()

    def _rebuild(self, s=None) -> None:
        members = [x for x in self.servers if x.up]
        table: list = [None] * TAB_SIZE
        if members:
            m = count = 0
            for b in range(TAB_SIZE):
                d = members[m]
                table[b] = d
                count += 1
                if count >= d.weight:  # filled its weight (at least one bucket): next one
                    m = m + 1 if m + 1 < len(members) else 0
                    count = 0
        self._table = table

    up = down = weight = _rebuild

    def pick(self, ctx: PickContext, avoid=None):
        table = self._table
        h = hashkey(ctx.client_ip, ctx.client_port if self._port else 0)
        s = table[h]
        if s is None:  # no servers at all
            return None
        if s.available and s is not avoid:
            return s
        if not self._fallback:
            return None
        for offset in range(TAB_SIZE):
            s = table[(offset + 2 * h) & TAB_MASK]
            if s.available and s is not avoid:
                return s
        return None
