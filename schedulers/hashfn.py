"""HAProxy's hash functions (src/hash.c) and its avalanche (full_hash, include/haproxy/tools.h),
on bytes, 32-bit results. sdbm is HAProxy's default."""
from __future__ import annotations

import zlib

M32 = 0xFFFFFFFF


def sdbm(data: bytes) -> int:
    h = 0
    for c in data:
        h = (c + (h << 6) + (h << 16) - h) & M32
    return h


def djb2(data: bytes) -> int:
    h = 5381
    for c in data:
        h = (h * 33 + c) & M32
    return h


def wt6(data: bytes) -> int:
    h0, h1, step0, step1 = 0xA53C965A, 0x5CA6953A, 6, 18
    for c in data:
        h0 = ~(h0 ^ c) & M32
        h1 = ~(h1 + c) & M32
        # x86 semantics for the C shift by 32 (step 0): the count is taken mod 32.
        t = ((h1 << step0) | (h1 >> ((32 - step0) & 31))) & M32
        h1 = ((h0 << step1) | (h0 >> ((32 - step1) & 31))) & M32
        h0 = t
        t = ((h0 >> 16) ^ h1) & 0xFFFF
        step0 = t & 0x1F
        step1 = t >> 11
    return h0 ^ h1


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & M32  # the same CRC-32 (0xedb88320, init and final ~) as hash_crc32


def full_hash(a: int) -> int:
    """Bob Jenkins' full avalanche, then * 3221225473 to spread over the ring (HAProxy's full_hash)."""
    a = ((a + 0x7ED55D16) + (a << 12)) & M32
    a = ((a ^ 0xC761C23C) ^ (a >> 19)) & M32
    a = ((a + 0x165667B1) + (a << 5)) & M32
    a = ((a + 0xD3A2646C) ^ (a << 9)) & M32
    a = ((a + 0xFD7046C5) + (a << 3)) & M32
    a = ((a ^ 0xB55A4F09) ^ (a >> 16)) & M32
    return (a * 3221225473) & M32


FUNCTIONS = {"sdbm": sdbm, "djb2": djb2, "wt6": wt6, "crc32": crc32}
