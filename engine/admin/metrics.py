"""Prometheus metrics: a custom Collector that reads the live counters when scraped, registered in
a CollectorRegistry of the engine's own (never the global one: two engines, two registries).

Names and labels follow HAProxy's built-in exporter (haproxy_frontend_*, haproxy_backend_*,
haproxy_server_*, labels `proxy` and `server`, `code` for response classes, `state` for status).
The histograms (request and connect time) have no counterpart there; they carry HAProxy-style
names: haproxy_{backend,server}_{request,connect}_duration_seconds.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString
from prometheus_client.registry import Collector

from virtserve.engine.admin import view
from virtserve.engine.admin.counters import BUCKETS
from virtserve.engine.admin.live import folded

if TYPE_CHECKING:
    from virtserve.engine.engine import Engine

CODES = ("other", "1xx", "2xx", "3xx", "4xx", "5xx")  # Counters.hrsp order
SERVER_STATES = ("DOWN", "UP", "MAINT", "DRAIN", "NOLB", "STOPPED")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def registry_for(engine: Engine) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(engine))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


class Exposition:
    """The engine's metrics as text: generate_latest()'s output, byte for byte, at a fraction
    of its cost per scrape.

    prometheus-client builds a Sample per value, then escapes and validates every metric name
    and label of every sample on every scrape: ~15 us a line, 3 ms for one backend of two
    servers, 3% of a core at one scrape per 100 ms. The names and labels do not change between
    scrapes, so each family's HELP/TYPE lines and each series' `name{labels} ` prefixes are made
    once, by prometheus-client itself (its family classes and generate_latest), and a scrape
    walks the engine as the collector does, writing only the values."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._cache: dict[tuple[Any, ...], tuple[str, tuple[str, ...]]] = {}

    def render(self) -> bytes:
        cache = self._cache
        groups = _walk(self.engine, lambda prefix, labels: _Text(prefix, labels, cache))
        text = "".join(line for g in groups for lines in g.families.values() for line in lines)
        if len(cache) > 4 * sum(g.series for g in groups) + 256:  # servers came and went
            cache.clear()
        return text.encode("utf-8")


class _Text:
    """_Families' twin that writes text lines (see Exposition)."""

    __slots__ = ("prefix", "labels", "families", "cache", "series")

    def __init__(self, prefix: str, labels: list[str], cache: dict[tuple[Any, ...], tuple[str, tuple[str, ...]]]) -> None:
        self.prefix = prefix
        self.labels = labels
        self.families: dict[str, list[str]] = {}
        self.cache = cache
        self.series = 0

    def _lines(self, kind: str, name: str, doc: str, labels: list[str], extra: list[str] | None) -> tuple[list[str], tuple[str, ...]]:
        key = (self.prefix, name, kind, *labels)
        known = self.cache.get(key)
        if known is None:  # first sight of this series: let prometheus-client write it once
            f = _Families(self.prefix, self.labels)
            if kind == "histogram":
                f.histogram(name, doc, labels, [0] * (len(BUCKETS) + 1), 0.0)
            else:
                f.add(kind, name, doc, labels, 0, extra)
            text = generate_latest(_Given(*f.families.values())).decode("utf-8").splitlines(keepends=True)
            known = self.cache[key] = ("".join(text[:2]), tuple(line[:line.rindex(" ") + 1] for line in text[2:]))
        lines = self.families.get(name)
        if lines is None:
            lines = self.families[name] = [known[0]]
        self.series += 1
        return lines, known[1]

    def add(self, kind: str, name: str, doc: str, labels: list[str], value: float, extra: list[str] | None = None) -> None:
        lines, (prefix,) = self._lines(kind, name, doc, labels, extra)
        lines.append(f"{prefix}{floatToGoString(value)}\n")

    def histogram(self, name: str, doc: str, labels: list[str], hist: list[int], total: float) -> None:
        lines, prefixes = self._lines("histogram", name, doc, labels, None)
        running = 0
        values = []
        for count in hist:
            running += count
            values.append(running)
        values += (running, total)  # _count, _sum: generate_latest's order after the buckets
        lines += [f"{p}{floatToGoString(v)}\n" for p, v in zip(prefixes, values)]


class _Given:
    """A collector of the given families, for generate_latest()."""

    def __init__(self, *families: Any) -> None:
        self.families = families

    def collect(self) -> Iterator[Any]:
        return iter(self.families)


class _Families:
    """Metric families created on first use, in a stable order."""

    def __init__(self, prefix: str, labels: list[str]) -> None:
        self.prefix = prefix
        self.labels = labels
        self.families: dict[str, Any] = {}

    def add(self, kind: str, name: str, doc: str, labels: list[str], value: float, extra: list[str] | None = None) -> None:
        fam = self.families.get(name)
        if fam is None:
            cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            fam = self.families[name] = cls(f"{self.prefix}_{name}", doc, labels=self.labels + (extra or []))
        fam.add_metric(labels, value)

    def histogram(self, name: str, doc: str, labels: list[str], hist: list[int], total: float) -> None:
        fam = self.families.get(name)
        if fam is None:
            fam = self.families[name] = HistogramMetricFamily(f"{self.prefix}_{name}", doc, labels=self.labels)
        buckets, running = [], 0
        for bound, count in zip((*map(repr, BUCKETS), "+Inf"), hist):
            running += count
            buckets.append((bound, running))
        fam.add_metric(labels, buckets, total)


def _http(f: _Families, labels: list[str], c: Any) -> None:
    for code, n in zip(CODES, c.hrsp):
        f.add("counter", "http_responses_total", "Total number of HTTP responses.", labels + [code], n, ["code"])


def _times(f: _Families, labels: list[str], c: Any) -> None:
    f.add("gauge", "connect_time_average_seconds", "Avg. connect time for last 1024 successful connections.", labels, c.ctime)
    f.add("gauge", "response_time_average_seconds", "Avg. response time for last 1024 successful connections.", labels, c.rtime)
    f.add("gauge", "total_time_average_seconds", "Avg. total time for last 1024 successful connections.", labels, c.ttime)
    f.add("gauge", "queue_time_average_seconds", "Avg. queue time for last 1024 successful connections.", labels, 0.0)
    f.histogram("request_duration_seconds", "Total time of requests (mode http) or connections (mode tcp).",
                labels, c.rt_hist, c.rt_sum)
    f.histogram("connect_duration_seconds", "Time to establish new server connections.", labels, c.ct_hist, c.ct_sum)


def _errors(f: _Families, labels: list[str], c: Any) -> None:
    f.add("counter", "connection_errors_total", "Total number of connection errors.", labels, c.conn_errors)
    f.add("counter", "response_errors_total", "Total number of response errors.", labels, c.resp_errors)
    f.add("counter", "retry_warnings_total", "Total number of retry warnings.", labels, c.retries)
    f.add("counter", "redispatch_warnings_total", "Total number of redispatch warnings.", labels, c.redispatches)
    f.add("counter", "client_aborts_total", "Total number of data transfers aborted by the client.", labels, c.cli_aborts)
    f.add("counter", "server_aborts_total", "Total number of data transfers aborted by the server.", labels, c.srv_aborts)


class EngineCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Any]:
        for group in _walk(self.engine, _Families):
            yield from group.families.values()


def _walk(e: Engine, make: Callable[[str, list[str]], Any]) -> tuple[Any, Any, Any]:
    """Read every counter once into families made by `make` (_Families for the registry,
    _Text for the exposition): frontends, backends, servers, each family in first-add order,
    with the bytes of the connections still open (live.py)."""
    with folded(e):
        return _read(e, make)


def _read(e: Engine, make: Callable[[str, list[str]], Any]) -> tuple[Any, Any, Any]:
    fr = make("haproxy_frontend", ["proxy"])
    for fe in e.frontends.values():
        c, lab = view.frontend_counters(fe), [fe.name]
        fr.add("gauge", "current_sessions", "Number of current sessions.", lab, fe.current)
        fr.add("gauge", "max_sessions", "Maximum observed number of active sessions.", lab, c.max_cur)
        fr.add("gauge", "limit_sessions", "Configured session limit.", lab, fe.maxconn)
        fr.add("counter", "sessions_total", "Total number of sessions.", lab, fe.total)
        fr.add("counter", "bytes_in_total", "Current total of incoming bytes.", lab, c.bytes_in)
        fr.add("counter", "bytes_out_total", "Current total of outgoing bytes.", lab, c.bytes_out)
        fr.add("counter", "requests_denied_total", "Total number of denied requests.", lab, c.denied)
        fr.add("counter", "request_errors_total", "Total number of request errors.", lab, c.req_errors)
        if fe.spec.mode == "http":
            fr.add("counter", "http_requests_total", "Total number of HTTP requests received.", lab, c.requests)
            _http(fr, lab, c)

    bk = make("haproxy_backend", ["proxy"])
    sv = make("haproxy_server", ["proxy", "server"])
    machines = view.check_machines(e)
    for b in e.backends.values():
        lab = [b.name]
        status = view.backend_status(b)
        for state in ("DOWN", "UP"):
            bk.add("gauge", "status", "Current status of the service.", lab + [state], state == status, ["state"])
        current = view.backend_current(b)
        c = view.backend_counters(b)
        bk.add("gauge", "current_sessions", "Number of current sessions.", lab, current)
        bk.add("gauge", "max_sessions", "Maximum observed number of active sessions.", lab, c.max_cur)
        bk.add("counter", "sessions_total", "Total number of sessions.", lab, b.total)
        bk.add("counter", "loadbalanced_total", "Total number of times a service was selected, either for new "
               "sessions, or when redispatching.", lab, b.total)
        bk.add("gauge", "current_queue", "Number of current queued connections.", lab, 0)
        bk.add("counter", "bytes_in_total", "Current total of incoming bytes.", lab, c.bytes_in)
        bk.add("counter", "bytes_out_total", "Current total of outgoing bytes.", lab, c.bytes_out)
        bk.add("gauge", "weight", "Service weight.", lab, sum(s.weight for s in b.servers if not s.backup))
        bk.add("gauge", "active_servers", "Current number of active servers.", lab,
               sum(1 for s in b.servers if not s.backup and view.server_status(s) == "UP"))
        bk.add("gauge", "backup_servers", "Current number of backup servers.", lab,
               sum(1 for s in b.servers if s.backup and view.server_status(s) == "UP"))
        _errors(bk, lab, c)
        _times(bk, lab, c)
        if b.spec.mode == "http":
            bk.add("counter", "http_requests_total", "Total number of HTTP requests received.", lab, c.requests or b.total)
            _http(bk, lab, c)
        for s in b.servers:
            c, slab = s.counters, [b.name, s.name]
            status = view.server_status(s)
            for state in SERVER_STATES:
                sv.add("gauge", "status", "Current status of the service.", slab + [state], state == status, ["state"])
            sv.add("gauge", "current_sessions", "Number of current sessions.", slab, s.active)
            sv.add("gauge", "max_sessions", "Maximum observed number of active sessions.", slab, c.max_cur)
            sv.add("gauge", "limit_sessions", "Configured session limit.", slab, s.maxconn)
            sv.add("counter", "sessions_total", "Total number of sessions.", slab, s.total)
            sv.add("gauge", "current_queue", "Number of current queued connections.", slab, 0)
            sv.add("counter", "bytes_in_total", "Current total of incoming bytes.", slab, c.bytes_in)
            sv.add("counter", "bytes_out_total", "Current total of outgoing bytes.", slab, c.bytes_out)
            sv.add("gauge", "weight", "Service weight.", slab, s.weight)
            sv.add("gauge", "uweight", "Server's user weight, or sum of active servers' user weights for a "
                   "backend.", slab, s.uweight)
            sv.add("gauge", "active", "Is the server active or not.", slab, 0 if s.backup else 1)
            sv.add("gauge", "backup", "Is the server backup or not.", slab, 1 if s.backup else 0)
            sv.add("counter", "loadbalanced_total", "Total number of times a service was selected, either for "
                   "new sessions, or when redispatching.", slab, s.total)
            sv.add("gauge", "check_last_change_seconds", "How long ago the status changed, in seconds.",
                   slab, view.server_last_change(s))
            _, code, duration = view.server_check(s)
            if duration is not None:
                sv.add("gauge", "check_duration_seconds", "Last health check duration.", slab, duration)
            if code:
                sv.add("gauge", "check_code", "layer5-7 code, if available of the last health check.", slab, int(code))
            machine = machines.get(id(s))
            if machine is not None:
                sv.add("counter", "check_failures_total", "Total number of failed individual health checks.",
                       slab, machine.failures)
            _errors(sv, slab, c)
            _times(sv, slab, c)
            if b.spec.mode == "http":
                _http(sv, slab, c)
    return fr, bk, sv
