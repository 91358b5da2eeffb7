"""The one typed config model every front end (TOML, haproxy.cfg, ldirectord.cf) parses into.

Frozen, slotted dataclasses: reload compares two trees and rebuilds only what changed.
Times are float seconds. `where` fields ("file:line") locate a setting for error messages;
they take no part in equality, so the same topology written in two formats compares equal.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Mode = Literal["tcp", "http"]
MODES = ("tcp", "http")


class ConfigError(ValueError):
    """A config that cannot be served. `where` is "file:line" (or just "file")."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where
        self.message = message


@dataclass(frozen=True, slots=True)
class Timeouts:
    """HAProxy's timeouts, in seconds. Frontends use client/http_request/keep_alive,
    backends connect/server/queue; both carry the whole set so defaults flow down."""

    connect: float = 5.0
    client: float = 50.0
    server: float = 50.0
    http_request: float = 10.0
    keep_alive: float = 10.0
    queue: float = 5.0
    handshake: float = 10.0  # PROXY header and TLS handshake of a new client connection


TLS_VERSIONS = ("TLSv1.2", "TLSv1.3")
VERIFY = ("none", "optional", "required")
PROXY_VERSIONS = ("v1", "v2")


@dataclass(frozen=True, slots=True)
class TlsBindSpec:
    """`bind ... ssl crt FILE|DIR`: TLS termination on a listener (engine/tls.py builds it)."""

    crt: tuple[str, ...]  # PEM files (chain + key) and directories of them; the first is the default
    min_version: str = "TLSv1.2"
    ciphers: str = ""  # OpenSSL cipher list for TLS 1.2; "" keeps OpenSSL's default
    alpn: tuple[str, ...] = ("http/1.1",)
    verify: str = "none"  # client certificates: none | optional | required
    ca_file: str = ""  # CAs that sign client certificates
    # Request headers carrying the client certificate to the servers ("" sends none).
    client_subject_header: str = ""
    client_verify_header: str = ""
    watch: float = 2.0  # seconds between checks of the files for changes; 0: only on reload
    where: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class TlsServerSpec:
    """`server ... ssl verify required ca-file F sni NAME`: TLS toward a real server."""

    verify: str = "required"  # none | required
    ca_file: str = ""  # "" trusts the system's CAs
    sni: str = ""  # server name sent, and checked against the certificate when verifying
    crt: str = ""  # a client certificate (PEM, chain + key) to present
    min_version: str = "TLSv1.2"
    ciphers: str = ""
    alpn: tuple[str, ...] = ()
    where: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class RedirectSpec:
    """`http-request redirect scheme https` on a frontend's plain (non-TLS) binds."""

    scheme: str = "https"
    code: int = 302
    port: int = 0  # 0 keeps the Host header as it is; else its port becomes this one


@dataclass(frozen=True, slots=True)
class BindSpec:
    address: str
    port: int  # 0 picks an ephemeral port
    where: str = field(default="", compare=False)
    ssl: TlsBindSpec | None = None
    accept_proxy: bool = False  # a PROXY v1/v2 header opens every connection


@dataclass(frozen=True, slots=True)
class ServerSpec:
    name: str
    address: str
    port: int
    weight: int = 1
    maxconn: int = 0  # 0: no limit
    backup: bool = False
    where: str = field(default="", compare=False)
    ssl: TlsServerSpec | None = None
    send_proxy: str = ""  # "", "v1" (send-proxy) or "v2" (send-proxy-v2)


@dataclass(frozen=True, slots=True)
class BackendSpec:
    name: str
    mode: Mode = "http"
    scheduler: str = "rr"
    # Algorithm arguments and flags (e.g. sh-port), as sorted (key, value) pairs: hashable.
    scheduler_options: tuple[tuple[str, Any], ...] = ()
    servers: tuple[ServerSpec, ...] = ()
    timeouts: Timeouts = Timeouts()
    retries: int = 3
    forwardfor: bool = False
    where: str = field(default="", compare=False)

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.scheduler_options)


@dataclass(frozen=True, slots=True)
class FrontendSpec:
    name: str
    binds: tuple[BindSpec, ...]
    default_backend: str
    mode: Mode = "http"
    timeouts: Timeouts = Timeouts()
    maxconn: int = 0  # 0: no limit
    forwardfor: bool = False
    where: str = field(default="", compare=False)
    redirect: RedirectSpec | None = None


@dataclass(frozen=True, slots=True)
class StatsSpec:
    """HAProxy's `stats` settings: the page (and /metrics) on its own listener, and the
    runtime API socket (`stats socket PATH level admin`)."""

    bind: BindSpec | None = None  # no page without one
    uri: str = "/"
    realm: str = "HAProxy Statistics"
    auth: tuple[tuple[str, str], ...] = ()  # (user, password); none: no credentials asked
    hide_version: bool = False
    admin: bool = False  # the page may change servers (ready/drain/maint, weight)
    refresh: float = 10.0  # seconds between the page's own reloads; 0: none
    metrics_uri: str = "/metrics"  # Prometheus text on the same listener; "" for none
    socket: str = ""  # UNIX socket path of the runtime API; "" for none
    socket_level: str = "admin"  # "user" (show only), "operator" or "admin"
    where: str = field(default="", compare=False)


LOG_FORMATS = ("auto", "httplog", "tcplog")


@dataclass(frozen=True, slots=True)
class LogSpec:
    """Access logs in HAProxy's formats. `target`: "stdout", "stderr", a file path, "udp@HOST:PORT"
    or "unix@PATH" (syslog); "auto" picks httplog for mode http frontends, tcplog for mode tcp."""

    target: str = "stdout"
    format: str = "auto"
    dontlognull: bool = False
    facility: str = "local0"
    tag: str = "virtserve"
    where: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class Config:
    frontends: tuple[FrontendSpec, ...] = ()
    backends: tuple[BackendSpec, ...] = ()
    grace: float = 10.0  # seconds in-flight work may take to finish on stop
    source: str = field(default="", compare=False)
    stats: StatsSpec | None = None
    log: LogSpec | None = None

    def backend(self, name: str) -> BackendSpec:
        for backend in self.backends:
            if backend.name == name:
                return backend
        raise KeyError(name)

    def summary(self) -> str:
        servers = sum(len(b.servers) for b in self.backends)
        binds = sum(len(f.binds) for f in self.frontends)
        return (
            f"{len(self.frontends)} frontend(s) on {binds} bind(s), "
            f"{len(self.backends)} backend(s), {servers} server(s)"
        )
