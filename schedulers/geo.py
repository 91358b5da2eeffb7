"""geo: the client's network chooses a group of servers, a second scheduler picks within it.

    scheduler = "geo"
    scheduler-options = { networks = ["127.0.0.0/30=a", "10.0.0.0/8=b"], group-a = ["s1", "s2"],
                          group-b = ["s3"], default = "b", inner = "wlc", networks-file = "nets.txt" }

`networks` maps CIDRs to group names (longest prefix wins); `networks-file` adds lines
"CIDR GROUP" (# comments). `group-NAME` lists the group's servers by name; `inner` is the
scheduler inside every group (default wlc, any registered name); clients matching no network go
to the `default` group (default: every server). Lookup: one dict probe per prefix length
present, so O(1) in the number of servers; the inner pick costs what that algorithm costs.

A MaxMind database (GeoIP2/GeoLite2 Country or City, or any DB with those fields), read with the
`maxminddb` package (`pip install 'virtserve[geo]'`):

    maxmind-db = "/var/lib/GeoIP/GeoLite2-Country.mmdb",
    countries = ["FR=eu", "DE=eu", "US=us"], continents = ["EU=eu", "NA=us", "AS=asia"]

A client's group is, in this order: the longest `networks` prefix holding it; its country
(`country.iso_code`, else `registered_country.iso_code`) in `countries`; its continent
(`continent.code`) in `continents`; the default group. A client's group is remembered per
address (a bounded cache: the tables do not change at run time), so a returning client costs
one dict probe. The file is opened when
the scheduler is built: a reload reads a new copy.
"""
from __future__ import annotations

import ipaddress
from typing import Any

from virtserve.schedulers.base import Needs, PickContext, Scheduler, create, register

CACHE_SIZE = 1 << 16  # client addresses whose group is remembered


def parse_networks(items, text: str = "") -> list[tuple[ipaddress._BaseNetwork, str]]:
    out = []
    pairs = [tuple(str(x).split("=", 1)) for x in items]
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            pairs.append(tuple(line.split(None, 1)))
    for pair in pairs:
        if len(pair) != 2 or not pair[1].strip():
            raise ValueError(f"geo network {'='.join(pair)!r}: expected CIDR=GROUP")
        try:
            net = ipaddress.ip_network(pair[0].strip(), strict=False)
        except ValueError as exc:
            raise ValueError(f"geo network {pair[0]!r}: {exc}") from None
        out.append((net, pair[1].strip()))
    return out


@register
class Geo(Scheduler):
    name = "geo"
    needs = Needs.ADDRESS

    def __init__(self, servers, options=None) -> None:
        super().__init__(servers, options)
        o = self.options
        text = ""
        if o.get("networks-file"):
            with open(str(o["networks-file"]), encoding="utf-8") as f:
                text = f.read()
        nets = o.get("networks", ())
        networks = parse_networks(nets if isinstance(nets, (list, tuple)) else [nets], text)
        inner = str(o.get("inner", "wlc"))
        if inner == "geo":
            raise ValueError("geo cannot nest itself")
        by_name = {s.name: s for s in self.servers}
        names = {n for _, n in networks} | {k[6:] for k in o if k.startswith("group-")}
        default = str(o.get("default", ""))
        if default:
            names.add(default)
        self._groups: dict[str, Scheduler] = {}
        self._owners: dict[int, list[Scheduler]] = {}  # id(server) -> the schedulers holding it
        for g in sorted(names):
            members = o.get(f"group-{g}")
            if members is None:
                raise ValueError(f"geo group {g!r} has no servers: add group-{g} = [\"server\", ...]")
            members = [members] if isinstance(members, str) else list(members)
            unknown = [m for m in members if m not in by_name]
            if unknown and self.servers:
                raise ValueError(f"geo group {g!r}: no server named {', '.join(map(repr, unknown))}")
            chosen = [by_name[m] for m in members if m in by_name]
            sched = create(inner, chosen, {})
            self._groups[g] = sched
            for s in chosen:
                self._owners.setdefault(id(s), []).append(sched)
        if default:
            self._default = self._groups[default]
        else:
            self._default = create(inner, self.servers, {})
            for s in self.servers:
                self._owners.setdefault(id(s), []).append(self._default)
        self._table: dict[int, dict[int, Scheduler]] = {}  # version -> {prefix length -> {net int: sched}}
        for net, g in networks:
            by_len = self._table.setdefault(net.version, {})
            by_len.setdefault(net.prefixlen, {})[int(net.network_address)] = self._groups[g]
        self._lens = {v: sorted(t, reverse=True) for v, t in self._table.items()}
        self._cache: dict[str, Scheduler] = {}  # client address -> its group (the tables are fixed)
        self._maxmind = None
        if o.get("maxmind-db"):
            self._maxmind = MaxMindGroups(str(o["maxmind-db"]), pairs(o, "countries"), pairs(o, "continents"),
                                          self._groups)
        elif o.get("countries") or o.get("continents"):
            raise ValueError("geo countries/continents need a database: maxmind-db = \"/path/GeoLite2-Country.mmdb\"")

    def _group(self, ip: str) -> Scheduler:
        try:
            addr = ipaddress.ip_address(ip.partition("%")[0])
        except ValueError:
            return self._default
        if addr.version == 6 and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        table = self._table.get(addr.version)
        if table:
            a = int(addr)
            width = addr.max_prefixlen
            for plen in self._lens[addr.version]:
                sched = table[plen].get(a >> (width - plen) << (width - plen))
                if sched is not None:
                    return sched
        if self._maxmind is not None:
            sched = self._maxmind.group(str(addr))
            if sched is not None:
                return sched
        return self._default

    def pick(self, ctx: PickContext, avoid=None):
        ip = ctx.client_ip
        sched = self._cache.get(ip)
        if sched is None:  # parsing the address costs more than the rest of the pick: once per client
            sched = self._group(ip)
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()  # simpler than LRU bookkeeping; refilled at one lookup per address
            self._cache[ip] = sched
        return sched.pick(ctx, avoid)

    def take(self, s) -> None:
        for sched in self._owners.get(id(s), ()):
            sched.take(s)

    def drop(self, s) -> None:
        for sched in self._owners.get(id(s), ()):
            sched.drop(s)

    def up(self, s) -> None:
        for sched in self._owners.get(id(s), ()):
            sched.up(s)

    def down(self, s) -> None:
        for sched in self._owners.get(id(s), ()):
            sched.down(s)

    def weight(self, s) -> None:
        for sched in self._owners.get(id(s), ()):
            sched.weight(s)


def pairs(options, key: str) -> dict[str, str]:
    """["FR=eu", ...] -> {"FR": "eu"}: codes compared upper-case, as the databases write them."""
    items = options.get(key, ())
    out = {}
    for item in [items] if isinstance(items, str) else items:
        code, sep, group = str(item).partition("=")
        if not sep or not code.strip() or not group.strip():
            raise ValueError(f"geo {key} {item!r}: expected CODE=GROUP")
        out[code.strip().upper()] = group.strip()
    return out



class MaxMindGroups:
    """Client address -> group scheduler through a MaxMind DB (Geo caches the answers)."""

    def __init__(self, path: str, countries: dict[str, str], continents: dict[str, str],
                 groups: dict[str, Scheduler]) -> None:
        try:
            import maxminddb
        except ImportError:
            raise ValueError("geo maxmind-db needs the maxminddb package: pip install 'virtserve[geo]'") from None
        for code, g in (countries | continents).items():
            if g not in groups:
                raise ValueError(f"geo group {g!r} (for {code}) has no servers: add group-{g} = [\"server\", ...]")
        try:
            self.reader = maxminddb.open_database(path)
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:  # missing, unreadable, not a DB
            raise ValueError(f"geo maxmind-db {path!r}: {exc}") from None
        self.invalid = maxminddb.InvalidDatabaseError
        self.countries = {code: groups[g] for code, g in countries.items()}
        self.continents = {code: groups[g] for code, g in continents.items()}

    def group(self, ip: str) -> Scheduler | None:
        try:
            record: Any = self.reader.get(ip)
        except (ValueError, self.invalid):  # IPv6 in an IPv4-only database; a corrupt record
            return None
        if not isinstance(record, dict):
            return None
        for key in ("country", "registered_country"):
            code = _code(record, key, "iso_code")
            if code is not None and code in self.countries:
                return self.countries[code]
        code = _code(record, "continent", "code")
        if code is not None:
            return self.continents.get(code)
        return None


def _code(record: dict, key: str, field: str) -> str | None:
    part = record.get(key)
    if isinstance(part, dict):
        value = part.get(field)
        if isinstance(value, str):
            return value.upper()
    return None
