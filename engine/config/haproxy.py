"""haproxy.cfg → Config.

A user copies the haproxy.cfg they run and gets the same topology in the one config model. Each
keyword has a handler in a table per section kind, so supporting a keyword is one entry; a keyword
that means nothing here (process management, log targets) is accepted with a one-line notice; any
other keyword is an error naming the file and line. Every error of the file is reported, not only
the first. Times without a unit are milliseconds, as in HAProxy.
"""
from __future__ import annotations

import dataclasses
import logging
import pathlib
import re
from os import PathLike
from typing import Any, Callable

from virtserve.engine.config.model import (
    BackendSpec,
    BindSpec,
    Config,
    ConfigError,
    ConfigErrors,
    FrontendSpec,
    ServerSpec,
    StatsSpec,
    Timeouts,
)
from virtserve.engine.config import haproxy_features as features
from virtserve.engine.config.conditions import split_words
from virtserve.engine.config.units import parse_time, split_host_port
from virtserve.engine.config.validate import validate

log = logging.getLogger("virtserve.config")

# HAProxy's `timeout` names → Timeouts fields (and their legacy spellings).
_TIMEOUTS = {
    "connect": "connect", "client": "client", "server": "server", "queue": "queue",
    "http-request": "http_request", "http-keep-alive": "keep_alive",
    "contimeout": "connect", "clitimeout": "client", "srvtimeout": "server",
}
# Timeouts HAProxy has that the model does not use yet: accepted, said once.
_TIMEOUTS_NOTED = ("tunnel", "client-fin", "server-fin", "tarpit")

# balance algorithm → (scheduler, option names its arguments fill)
_BALANCE_ARGS = {"uri": ("len", "depth"), "random": ("draws",), "url_param": ("param",)}
_BALANCE_INNER = {"hdr": "header", "rdp-cookie": "cookie", "random": "draws"}  # hdr(NAME) etc.
_BALANCE_FLAGS = {"whole": "whole", "path-only": "path-only", "check_post": "check-post",
                  "use_domain_only": "use-domain-only"}

# Process-level keywords with no meaning here: accepted with a notice.
_GLOBAL_NOTED = {
    "daemon", "user", "group", "uid", "gid", "chroot", "pidfile", "nbproc", "nbthread", "cpu-map",
    "log", "log-send-hostname", "log-tag", "master-worker", "ulimit-n", "stats", "ca-base",
    "crt-base", "tune.ssl.default-dh-param", "ssl-default-bind-ciphers", "ssl-default-bind-options",
    "ssl-default-bind-ciphersuites", "ssl-default-server-ciphers", "ssl-default-server-options",
    "ssl-default-server-ciphersuites", "maxconn", "spread-checks", "quiet", "node", "description",
    "hard-stop-after", "localpeer", "setenv", "presetenv", "unsetenv", "resetenv", "lua-load",
    "server-state-file", "server-state-base", "h1-case-adjust",
}
_PROXY_NOTED = {"log", "description", "id", "disabled", "enabled", "unique-id-format", "capture",
                "log-format", "errorfile", "monitor-uri", "email-alert", "compression", "http-reuse"}
_OPTIONS_NOTED = {  # options accepted with a notice: logging comes with the stats and logs work
    "httplog", "tcplog", "dontlognull", "log-health-checks", "logasap", "http-keep-alive",
    "http-server-close", "splice-auto", "splice-request", "splice-response", "tcpka", "clitcpka",
    "srvtcpka", "abortonclose", "http-buffer-request", "prefer-last-server", "socket-stats",
}


class _Proxy:
    """A frontend, backend, listen or defaults section while its lines are read."""

    def __init__(self, kind: str, name: str, where: str, defaults: _Proxy | None) -> None:
        self.kind, self.name, self.where = kind, name, where
        base = defaults.settings if defaults is not None else {}
        self.settings: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
        self.settings.setdefault("timeouts", {})
        self.binds: list[BindSpec] = []
        self.servers: list[tuple[dict[str, Any], ServerSpec]] = []  # (check overrides, server)
        self.lines: dict[str, str] = {}  # model field -> where it was set

    def set(self, key: str, value: Any, where: str) -> None:
        self.settings[key] = value
        self.lines[key] = where

    def frontend(self) -> FrontendSpec:
        s = self.settings
        backend = self.name if self.kind == "listen" else s.get("default_backend", "")
        return FrontendSpec(
            name=self.name, binds=tuple(self.binds), default_backend=backend, mode=s.get("mode", "tcp"),
            timeouts=self._timeouts(), maxconn=s.get("maxconn", 0), forwardfor=s.get("forwardfor", False),
            where=self.where, rules=s.get("rules", ()), routes=s.get("routes", ()),
            stats=self._stats() if self.kind == "frontend" else None, httpclose=s.get("httpclose", False))

    def backend(self) -> BackendSpec:
        s = self.settings
        servers = features.finish_servers(self, self.servers)
        checked = any(server.checked for _, server in self.servers)
        return BackendSpec(
            name=self.name, mode=s.get("mode", "tcp"), scheduler=s.get("scheduler", "roundrobin"),
            scheduler_options=tuple(sorted(s.get("scheduler_options", {}).items())),
            servers=servers, timeouts=self._timeouts(), retries=s.get("retries", 3),
            forwardfor=s.get("forwardfor", False), where=self.where,
            check=features.backend_check(self) if checked else None,
            slowstart=s.get("slowstart", 0.0), allbackups=s.get("allbackups", False),
            cookie=s.get("cookie"), stick=s.get("stick"), redispatch=s.get("redispatch", False),
            # A listen's rules run as its frontend's; its stats answer whatever reaches it.
            rules=s.get("rules", ()) if self.kind == "backend" else (), stats=self._stats(),
            httpclose=s.get("httpclose", False))

    def _stats(self) -> StatsSpec | None:
        """Its stats settings; those of `defaults` only where they can be served (mode http), as
        HAProxy ignores them on a tcp proxy."""
        if "stats" not in self.lines and self.settings.get("mode", "tcp") != "http":
            return None
        return self.settings.get("stats")

    def _timeouts(self) -> Timeouts:
        return dataclasses.replace(Timeouts(), **self.settings["timeouts"])


Handler = Callable[["_Parser", _Proxy, list[str], str], None]


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: list[ConfigError] = []
        self.notices: list[str] = []
        self.proxies: list[_Proxy] = []
        self.defaults: _Proxy | None = None
        self.grace: float | None = None
        self.stats_socket: tuple[str, str, str] | None = None  # path, level, where
        self._noted: set[str] = set()

    def note(self, where: str, message: str) -> None:
        if message not in self._noted:
            self._noted.add(message)
            self.notices.append(f"{where}: notice: {message}")

    def parse(self, text: str) -> Config:
        section: _Proxy | None = None
        kind = ""
        for lineno, line in enumerate(text.splitlines(), 1):
            where = f"{self.source}:{lineno}"
            try:
                words = _split(line, where)
                if not words:
                    continue
                keyword = words[0]
                if keyword in _SECTIONS:
                    kind = keyword
                    section = self._open(keyword, words[1:], where)
                    continue
                if not kind:
                    raise ConfigError(where, f"{keyword!r} outside of any section (global, defaults, "
                                             "frontend, backend, listen)")
                if kind == "global":
                    self._global(words, where)
                elif section is None:
                    continue  # inside a section kind we skip whole (said when it opened)
                else:
                    self._keyword(section, words, where)
            except ConfigError as exc:
                self.errors.append(exc)
        return self._build()

    def _open(self, kind: str, args: list[str], where: str) -> _Proxy | None:
        if kind == "global":
            return None
        if kind not in ("defaults", "frontend", "backend", "listen"):
            self.note(where, f"section {kind!r} is not used by virtserve; its lines are skipped")
            return None
        if kind == "defaults":
            self.defaults = _Proxy("defaults", args[0] if args else "", where, None)
            return self.defaults
        if not args:
            raise ConfigError(where, f"{kind} needs a name")
        proxy = _Proxy(kind, args[0], where, self.defaults)
        self.proxies.append(proxy)
        if len(args) > 1:
            if kind == "backend":
                raise ConfigError(where, f"a backend takes no address ({' '.join(args[1:])!r})")
            self._bind(proxy, args[1:], where)
        return proxy

    def _global(self, words: list[str], where: str) -> None:
        keyword = words[0]
        if keyword == "stats" and words[1:2] == ["socket"] and len(words) >= 3:
            opts = dict(zip(words[3::2], words[4::2]))
            self.stats_socket = (words[2], opts.get("level", "admin"), where)
            return
        if keyword == "hard-stop-after" and len(words) > 1:
            self.grace = _time(words[1], where, "hard-stop-after")
        if keyword in _GLOBAL_NOTED or keyword.startswith("tune."):
            self.note(where, f"global {keyword!r} has no effect in virtserve")
            return
        raise ConfigError(where, f"unknown keyword {keyword!r} in section 'global'")

    def _keyword(self, proxy: _Proxy, words: list[str], where: str) -> None:
        keyword, args = words[0], words[1:]
        handler = _KEYWORDS.get(keyword)
        if handler is None:
            if keyword in _PROXY_NOTED:
                self.note(where, f"{keyword!r} has no effect in virtserve yet")
                return
            raise ConfigError(where, f"unknown keyword {keyword!r} in {proxy.kind} section")
        allowed, fn = handler
        if proxy.kind not in allowed:
            raise ConfigError(where, f"{keyword!r} is not allowed in a {proxy.kind} section "
                                     f"(only in {', '.join(sorted(allowed))})")
        fn(self, proxy, args, where)

    def _bind(self, proxy: _Proxy, args: list[str], where: str) -> None:
        if not args:
            raise ConfigError(where, "bind needs an address, like 127.0.0.1:80")
        address, params = args[0], args[1:]
        for part in address.split(","):  # `bind :80,:81` binds both
            host, port = _host_port(part, where, "bind")
            proxy.binds.append(features.bind_options(proxy, host or "0.0.0.0", port, params, where))

    def _build(self) -> Config:
        frontends, backends = [], []
        stats = None
        for proxy in self.proxies:
            try:
                # A section that only shows stats (`listen stats` + bind) is the stats listener;
                # on a proxy that serves traffic the page is served in-band (its spec's stats).
                if "stats" in proxy.settings and proxy.kind != "backend" and not proxy.servers \
                        and "default_backend" not in proxy.settings:
                    if stats is not None or len(proxy.binds) != 1:
                        raise ConfigError(proxy.where, "one stats section, with exactly one bind, is supported")
                    stats = dataclasses.replace(proxy.settings["stats"], bind=proxy.binds[0])
                    continue
                if "stats" in proxy.settings and proxy.settings["stats"].admin:
                    self.note(proxy.lines.get("stats", proxy.where), "stats admin: the page served in-band shows no admin form; "
                                                    "use a `listen stats` section or the stats socket to change servers")
                if proxy.kind in ("frontend", "listen"):
                    if proxy.kind == "frontend" and "default_backend" not in proxy.settings:
                        raise ConfigError(proxy.where, f"frontend {proxy.name!r} has no default_backend")
                    frontends.append(proxy.frontend())
                if proxy.kind in ("backend", "listen"):
                    backends.append(proxy.backend())
            except ConfigError as exc:
                self.errors.append(exc)
        if self.errors:
            raise ConfigErrors(sorted(self.errors, key=_line_of))
        extra: dict[str, Any] = {"grace": self.grace} if self.grace is not None else {}
        if self.stats_socket is not None:
            path, level, _ = self.stats_socket
            stats = dataclasses.replace(stats or StatsSpec(where=self.stats_socket[2]), socket=path, socket_level=level)
        if stats is not None:
            extra["stats"] = stats
        config = Config(frontends=tuple(frontends), backends=tuple(backends), source=self.source, **extra)

        def locate(spec: object, field: str) -> str:
            for proxy in self.proxies:
                if getattr(spec, "name", None) == proxy.name and getattr(spec, "where", None) == proxy.where:
                    return proxy.lines.get(field, "")
            return ""

        validate(config, locate=locate)
        return config


# --- keyword handlers ---------------------------------------------------------------------------

FRONT = frozenset({"frontend", "listen", "defaults"})
BACK = frozenset({"backend", "listen", "defaults"})
ANY = FRONT | BACK
PROXIES = frozenset({"frontend", "backend", "listen"})


def _kw_mode(p: _Parser, proxy: _Proxy, args: list[str], where: str) -> None:
    if len(args) != 1 or args[0] not in ("tcp", "http"):
        raise ConfigError(where, f"mode must be 'tcp' or 'http', got {' '.join(args)!r}")
    proxy.set("mode", args[0], where)


def _kw_maxconn(p: _Parser, proxy: _Proxy, args: list[str], where: str) -> None:
    proxy.set("maxconn", _int(args, where, "maxconn"), where)


def _kw_retries(p: _Parser, proxy: _Proxy, args: list[str], where: str) -> None:
    proxy.set("retries", _int(args, where, "retries"), where)


def _kw_timeout(p: _Parser, proxy: _Proxy, args: list[str], where: str) -> None:
    if len(args) != 2:
        raise ConfigError(where, "timeout needs a name and a time, like `timeout client 30s`")
    name, value = args
    if name == "check":
        proxy.set("check_timeout", _time(value, where, "timeout check"), where)
        return
    if name in _TIMEOUTS_NOTED:
        p.note(where, f"timeout {name} is not used by virtserve yet")
        return
    field = _TIMEOUTS.get(name)
    if field is None:
        raise ConfigError(where, f"unknown timeout {name!r} (known: {', '.join(_TIMEOUTS)})")
    proxy.settings["timeouts"][field] = _time(value, where, f"timeout {name}")
    proxy.lines[f"timeouts.{field}"] = where


def _kw_legacy_timeout(name: str) -> Handler:
    def handler(p: _Parser, proxy: _Proxy, args: list[str], where: str) -> None:
        p.note(where, f"{name!r} is the pre-1.5 spelling of `timeout {_TIMEOUTS[name].replace('_', '-')}`")
        _kw_timeout(p, proxy, [name, *args], where)
    return handler


def _kw_default_backend(p: _Parser, proxy: _Proxy, args: list[str], where: str) -> None:
    if len(args) != 1:
        raise ConfigError(where, "default_backend needs one backend name")
    proxy.set("default_backend", args[0], where)


def _kw_bind(p: _Parser, proxy: _Proxy, args: list[str], where: str) -> None:
    p._bind(proxy, args, where)


def _kw_balance(p: _Parser, proxy: _Proxy, args: list[str], where: str) -> None:
    if not args:
        raise ConfigError(where, "balance needs an algorithm, like `balance roundrobin`")
    algorithm, params = args[0], args[1:]
    options: dict[str, Any] = {}
    m = re.fullmatch(r"(hdr|rdp-cookie|random)\((.*)\)", algorithm)
    if m:  # hdr(Host), rdp-cookie(mstshash), random(3)
        algorithm, inner = m.group(1), m.group(2)
        if inner:
            options[_BALANCE_INNER[algorithm]] = int(inner) if inner.isdigit() else inner
    names = iter(_BALANCE_ARGS.get(algorithm, ()))
    i = 0
    while i < len(params):
        word = params[i]
        if word in ("len", "depth") and i + 1 < len(params):
            options[word] = _int([params[i + 1]], where, f"balance {algorithm} {word}")
            i += 2
            continue
        if word in _BALANCE_FLAGS:
            options[_BALANCE_FLAGS[word]] = True
        else:
            name = next(names, None)
            if name is None:
                raise ConfigError(where, f"balance {algorithm}: unexpected argument {word!r}")
            options[name] = word
        i += 1
    proxy.set("scheduler", algorithm, where)
    hash_type = proxy.settings.get("scheduler_options", {}).get("hash-type")
    proxy.set("scheduler_options", {**options, **({"hash-type": hash_type} if hash_type else {})}, where)


def _kw_hash_type(p: _Parser, proxy: _Proxy, args: list[str], where: str) -> None:
    """`hash-type map-based|consistent [sdbm|djb2|wt6|crc32] [avalanche]`."""
    if not args or args[0] not in ("map-based", "consistent"):
        raise ConfigError(where, "hash-type must be map-based or consistent, optionally with a function")
    options = dict(proxy.settings.get("scheduler_options", {}))
    options["hash-type"] = " ".join(args)
    proxy.set("scheduler_options", options, where)


def _kw_server(p: _Parser, proxy: _Proxy, args: list[str], where: str) -> None:
    if len(args) < 2:
        raise ConfigError(where, "server needs a name and an address, like `server web1 10.0.0.1:80`")
    name, address, params = args[0], args[1], args[2:]
    host, port = _host_port(address, where, f"server {name}")
    if not port:
        raise ConfigError(where, f"server {name}: {address!r} needs a port (port-less servers are not supported)")
    fields = features.server_options(p, proxy, name, params, where)
    overrides = fields.pop("check_overrides", {})
    proxy.servers.append((overrides, ServerSpec(name=name, address=host, port=port, where=where, **fields)))


def _kw_option(p: _Parser, proxy: _Proxy, args: list[str], where: str) -> None:
    if not args:
        raise ConfigError(where, "option needs a name")
    name, params = args[0], args[1:]
    if name == "forwardfor":
        if params:
            raise ConfigError(where, f"option forwardfor {' '.join(params)!r} is not supported yet")
        proxy.set("forwardfor", True, where)
    elif name == "httpchk":
        features.kw_option_httpchk(p, proxy, params, where)
    elif name in ("redispatch", "allbackups"):
        proxy.set(name, True, where)
    elif name in ("httpclose", "forceclose"):
        pass  # set below
    elif name in _OPTIONS_NOTED:
        p.note(where, f"option {name} has no effect in virtserve yet")
    else:
        raise ConfigError(where, f"unknown or unsupported option {name!r}")
    if name in ("httpclose", "forceclose", "http-server-close", "http-keep-alive"):
        proxy.set("httpclose", name in ("httpclose", "forceclose"), where)  # the last one wins


def _kw_no(p: _Parser, proxy: _Proxy, args: list[str], where: str) -> None:
    if args[:1] != ["option"] or len(args) < 2:
        raise ConfigError(where, "`no` must be followed by `option NAME`")
    if args[1] == "forwardfor":
        proxy.set("forwardfor", False, where)
    elif args[1] in ("httpclose", "forceclose"):
        proxy.set("httpclose", False, where)
    elif args[1] in _OPTIONS_NOTED:
        p.note(where, f"no option {args[1]} has no effect in virtserve yet")
    else:
        raise ConfigError(where, f"unknown or unsupported option {args[1]!r}")


_KEYWORDS: dict[str, tuple[frozenset[str], Handler]] = {
    "mode": (ANY, _kw_mode),
    "maxconn": (FRONT, _kw_maxconn),
    "retries": (BACK, _kw_retries),
    "timeout": (ANY, _kw_timeout),
    "contimeout": (ANY, _kw_legacy_timeout("contimeout")),
    "clitimeout": (ANY, _kw_legacy_timeout("clitimeout")),
    "srvtimeout": (ANY, _kw_legacy_timeout("srvtimeout")),
    "default_backend": (FRONT, _kw_default_backend),
    "bind": (frozenset({"frontend", "listen"}), _kw_bind),
    "balance": (BACK, _kw_balance),
    "hash-type": (BACK, _kw_hash_type),
    "server": (frozenset({"backend", "listen"}), _kw_server),
    "option": (ANY, _kw_option),
    "no": (ANY, _kw_no),
    "cookie": (BACK, features.kw_cookie),
    "stick-table": (frozenset({"backend", "listen"}), features.kw_stick),
    "stick": (frozenset({"backend", "listen"}), features.kw_stick),
    "http-check": (BACK, features.kw_http_check),
    "stats": (ANY, features.kw_stats),
    "acl": (PROXIES, features.kw_acl),
    "use_backend": (frozenset({"frontend", "listen"}), features.kw_use_backend),
    "http-request": (PROXIES, features.kw_http_request),
    "reqadd": (PROXIES, features.kw_reqadd),
}

_SECTIONS = {"global", "defaults", "frontend", "backend", "listen", "userlist", "peers", "resolvers",
             "mailers", "cache", "program", "http-errors", "ring", "fcgi-app", "crt-store"}


# --- lexical ---------------------------------------------------------------------------------------

def _split(line: str, where: str) -> list[str]:
    """The words of one line, with HAProxy's quoting, backslash escapes and # comments."""
    try:
        return split_words(line, comments=True)
    except ValueError:  # the only one split_words raises: a quote left open
        raise ConfigError(where, "unterminated quote") from None


def _host_port(text: str, where: str, what: str) -> tuple[str, int]:
    for prefix in ("ipv4@", "ipv6@"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    if "@" in text.split(":")[0]:
        raise ConfigError(where, f"{what}: address family of {text!r} is not supported (ipv4@ and ipv6@ are)")
    try:
        host, port = split_host_port(text)
    except ValueError as exc:
        raise ConfigError(where, f"{what}: {exc}") from None
    if host in ("*", ""):
        host = "0.0.0.0"
    return host, port or 0


def _line_of(error: ConfigError) -> int:
    line = error.where.rpartition(":")[2]
    return int(line) if line.isdigit() else 0


def _int(args: list[str], where: str, what: str) -> int:
    if len(args) != 1 or not re.fullmatch(r"[0-9]+", args[0]):
        raise ConfigError(where, f"{what} needs a whole number, got {' '.join(args)!r}")
    return int(args[0])


def _time(value: str, where: str, what: str) -> float:
    try:
        return parse_time(value, bare_unit="ms")
    except ValueError as exc:
        raise ConfigError(where, f"{what}: {exc}") from None


def parse(text: str, *, source: str = "<haproxy.cfg>") -> Config:
    """Parse haproxy.cfg text. Raises ConfigErrors listing every problem as FILE:LINE; logs a
    notice for each setting accepted without effect."""
    config, notices = parse_with_notices(text, source=source)
    for notice in notices:
        log.warning("%s", notice)
    return config


def parse_with_notices(text: str, *, source: str = "<haproxy.cfg>") -> tuple[Config, list[str]]:
    parser = _Parser(source)
    return parser.parse(text), parser.notices


def load(path: str | PathLike[str]) -> Config:
    path = pathlib.Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read config: {exc.strerror or exc}") from None
    return parse(text, source=str(path))
