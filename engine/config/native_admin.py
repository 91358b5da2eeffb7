"""The TOML `[stats]` and `[log]` tables → StatsSpec and LogSpec, with file:line errors.

    [stats]                               [log]
    bind = "127.0.0.1:8404"               target = "stdout"   # or a path, "udp@127.0.0.1:514",
    uri = "/stats"                                             #    "unix@/dev/log"
    realm = "LB"                          format = "auto"     # httplog | tcplog
    auth = ["admin:secret"]               dontlognull = true
    hide-version = true                   facility = "local0"
    admin = true
    refresh = "5s"
    metrics-uri = "/metrics"
    socket = "/run/virtserve.sock"
    socket-level = "admin"

A frontend or backend serving traffic may show the page in-band, on its own binds, as HAProxy's
`stats uri` in a proxy does: requests whose URI starts with the uri get the page.

    [backend.app]
    stats = { uri = "/stats", realm = "Haproxy Statistics", auth = "haproxy:password",
              hide-version = true }
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from virtserve.engine.config.model import LOG_FORMATS, BindSpec, LogSpec, StatsSpec
from virtserve.engine.config.units import parse_time, split_host_port

if TYPE_CHECKING:
    from virtserve.engine.config.native import _Builder, _Table

STATS_KEYS = ("bind", "uri", "realm", "auth", "hide-version", "admin", "refresh", "metrics-uri",
              "socket", "socket-level")
PROXY_STATS_KEYS = ("uri", "realm", "auth", "hide-version", "admin", "refresh")
LOG_KEYS = ("target", "format", "dontlognull", "facility", "tag")
SOCKET_LEVELS = ("user", "operator", "admin")
FACILITIES = ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
              "auth2", "ftp", "ntp", "audit", "alert", "cron2", *(f"local{i}" for i in range(8)))


def admin_sections(builder: _Builder, top: _Table) -> dict[str, Any]:
    from virtserve.engine.config.native import _Table

    out: dict[str, Any] = {}
    if "stats" in top:
        table = _Table(builder.doc, top.path_of("stats"), top.raw["stats"][1], STATS_KEYS, "[stats]")
        out["stats"] = _stats(builder, table)
    if "log" in top:
        table = _Table(builder.doc, top.path_of("log"), top.raw["log"][1], LOG_KEYS, "[log]")
        out["log"] = _log(table)
    return out


def proxy_stats(builder: _Builder, section: _Table) -> StatsSpec:
    """`stats = { uri = ..., ... }` in a frontend or backend (`stats = true`: the defaults)."""
    from virtserve.engine.config.native import _Table

    value = section.raw["stats"][1]
    path = section.path_of("stats")
    if value is True:
        value = {}
    t = _Table(builder.doc, path, value, PROXY_STATS_KEYS, f"the stats of {section.label}")
    return StatsSpec(where=builder.doc.at(path), **_page_kwargs(t))


def _stats(builder: _Builder, t: _Table) -> StatsSpec:
    kw: dict[str, Any] = {}
    if "bind" in t:
        host, port = t.get("bind", split_host_port)
        if port is None:
            raise builder.doc.error(t.path_of("bind"), "bind in [stats] has no port: write 'host:port'")
        kw["bind"] = BindSpec(host or "0.0.0.0", port, where=builder.doc.at(t.path_of("bind")))
    if "metrics-uri" in t:
        kw["metrics_uri"] = t.get("metrics-uri", _uri_or_empty)
    kw.update(_page_kwargs(t))
    if "socket" in t:
        kw["socket"] = t.get("socket", _text)
    if "socket-level" in t:
        kw["socket_level"] = t.get("socket-level", _choice(SOCKET_LEVELS))
    if not kw.get("bind") and not kw.get("socket"):
        raise builder.doc.error(t.path, "[stats] needs a bind (for the page) or a socket (for the runtime API)")
    return StatsSpec(where=builder.doc.at(t.path), **kw)


def _page_kwargs(t: _Table) -> dict[str, Any]:
    """The page's settings, wherever it is served."""
    kw: dict[str, Any] = {}
    if "uri" in t:
        kw["uri"] = t.get("uri", _uri)
    if "realm" in t:
        kw["realm"] = t.get("realm", _text)
    if "auth" in t:
        kw["auth"] = t.get("auth", _auth)
    for key in ("hide-version", "admin"):
        if key in t:
            kw[key.replace("-", "_")] = t.get(key, _bool)
    if "refresh" in t:
        kw["refresh"] = t.get("refresh", lambda v: parse_time(v, bare_unit="s"))
    return kw


def _log(t: _Table) -> LogSpec:
    kw: dict[str, Any] = {}
    if "target" in t:
        kw["target"] = t.get("target", _target)
    if "format" in t:
        kw["format"] = t.get("format", _choice(LOG_FORMATS))
    if "dontlognull" in t:
        kw["dontlognull"] = t.get("dontlognull", _bool)
    if "facility" in t:
        kw["facility"] = t.get("facility", _choice(FACILITIES))
    if "tag" in t:
        kw["tag"] = t.get("tag", _text)
    return LogSpec(where=t.doc.at(t.path), **kw)


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _uri(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"expected a path starting with '/', got {value!r}")
    return value


def _uri_or_empty(value: Any) -> str:
    return "" if value == "" else _uri(value)


def _auth(value: Any) -> tuple[tuple[str, str], ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ValueError(f"expected 'user:password' or a list of them, got {value!r}")
    pairs = []
    for item in items:
        if not isinstance(item, str) or ":" not in item or item.startswith(":"):
            raise ValueError(f"expected 'user:password', got {item!r}")
        user, _, password = item.partition(":")
        pairs.append((user, password))
    return tuple(pairs)


def _choice(choices: tuple[str, ...]):  # type: ignore[no-untyped-def]
    def convert(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return value
    return convert


def _target(value: Any) -> str:
    value = _text(value)
    if value.startswith("udp@"):
        host, port = split_host_port(value[4:])
        if not host or port is None:
            raise ValueError(f"a syslog target needs 'udp@host:port', got {value!r}")
    elif value.startswith("unix@") and len(value) == 5:
        raise ValueError("a syslog target needs 'unix@/path/to/socket'")
    return value
