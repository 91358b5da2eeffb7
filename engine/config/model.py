"""The one typed config model every front end (TOML, haproxy.cfg, ldirectord.cf) parses into.

Frozen, slotted dataclasses: reload compares two trees and rebuilds only what changed.
Times are float seconds. `where` fields ("file:line") locate a setting for error messages;
they take no part in equality, so the same topology written in two formats compares equal.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from virtserve.engine.config.rules import RouteSpec, RuleSpec

Mode = Literal["tcp", "http"]
MODES = ("tcp", "http")


class ConfigError(ValueError):
    """A config that cannot be served. `where` is "file:line" (or just "file")."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where
        self.message = message


class ConfigErrors(ConfigError):
    """Every problem found in one file, each a ConfigError; printed one per line."""

    def __init__(self, errors: list[ConfigError]) -> None:
        first = errors[0]
        super().__init__(first.where, first.message)
        self.errors = list(errors)

    def __str__(self) -> str:
        return "\n".join(ValueError.__str__(e) for e in self.errors)


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


CHECK_TYPES = ("connect", "http", "https", "smtp", "tcp", "external", "agent", "on", "off")
ALERT_STATUSES = ("all", "none", "starting", "running", "stopping")


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """A health check (ldirectord checktype/service, HAProxy check/httpchk/agent-check).

    `on` and `off` are ldirectord's: the server is always up / always down, never probed.
    Times are seconds; `timeout` 0 means the interval, `negotiate_timeout` 0 means `timeout`."""

    type: str = "connect"
    interval: float = 2.0
    timeout: float = 0.0  # connect checks, and the connect step of the others
    negotiate_timeout: float = 0.0  # bounds the whole of a http/https/smtp/tcp/agent check
    rise: int = 2
    fall: int = 3
    port: int = 0  # 0: the server's port (agent checks usually name theirs)
    request: str = "/"  # http/https: the path asked for
    receive: str = ""  # http/https: a regular expression the response must match
    method: str = "GET"
    virtualhost: str = ""  # Host header and TLS SNI; the server address when empty
    status: tuple[int, ...] = ()  # expected status codes; empty: any 2xx or 3xx
    send: str = ""  # tcp: bytes sent after connecting (escapes \r \n allowed in TOML strings)
    expect: str = ""  # tcp: a regular expression the reply must match
    command: tuple[str, ...] = ()  # external: argv; server address and port are appended
    where: str = field(default="", compare=False)

    @property
    def connect_timeout(self) -> float:
        return self.timeout or self.interval

    @property
    def probe_timeout(self) -> float:
        """The bound on one whole probe."""
        if self.type in ("connect", "external"):
            return self.connect_timeout
        return self.negotiate_timeout or self.connect_timeout


@dataclass(frozen=True, slots=True)
class AlertSpec:
    """ldirectord's emailalert, emailalertfreq, emailalertstatus, mailed through an SMTP relay."""

    to: tuple[str, ...]
    relay: str = "127.0.0.1"
    relay_port: int = 25
    sender: str = "virtserve@localhost"
    freq: float = 0.0  # repeat every freq seconds while a server stays down; 0: once
    status: tuple[str, ...] = ("all",)  # engine states in which state changes are mailed
    where: str = field(default="", compare=False)


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
    check: CheckSpec | None = None  # this server's own check; None: the backend's
    checked: bool = True  # false: never checked, always up (HAProxy: no `check`)
    cookie: str = ""  # value of the persistence cookie naming this server ("" = its name)
    forward: str = "masq"  # IPVS forwarding method: masq (NAT) | gate (direct routing) | ipip (tunnel)
    u_threshold: int = 0  # IPVS: no new connections above this many (0: no limit)
    l_threshold: int = 0  # IPVS: take new ones again below this many


COOKIE_MODES = ("insert", "rewrite", "prefix")


@dataclass(frozen=True, slots=True)
class CookieSpec:
    """HAProxy `cookie NAME insert|rewrite|prefix [indirect] [nocache] [postonly] [preserve]
    [httponly] [secure] [domain D] [maxidle T] [maxlife T]`."""

    name: str
    mode: str = "insert"
    indirect: bool = False
    nocache: bool = False
    postonly: bool = False
    preserve: bool = False
    httponly: bool = False
    secure: bool = False
    domain: str = ""
    maxidle: float = 0.0  # seconds, 0: none
    maxlife: float = 0.0
    where: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class PersistentSpec:
    """IPVS `-p TIMEOUT -M NETMASK`: the client network keeps its server until TIMEOUT after its
    last connection ends."""

    timeout: float = 300.0
    netmask: int = 32  # prefix length for IPv4 clients
    netmask6: int = 128  # prefix length for IPv6 clients
    where: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class StickSpec:
    """HAProxy `stick-table type ip size N expire T` + `stick on src`."""

    size: int = 100_000
    expire: float = 1800.0
    where: str = field(default="", compare=False)


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
    check: CheckSpec | None = None  # None: servers are not checked, always up
    quiescent: bool = False  # a failed server keeps its place with weight 0 (ldirectord)
    slowstart: float = 0.0  # seconds a recovered server takes to ramp up to its weight
    allbackups: bool = False  # use every backup at once, not just the first (HAProxy)
    fallback: ServerSpec | None = None  # serves when every real server is down (ldirectord)
    shutdown_sessions: bool = False  # on-marked-down shutdown-sessions (HAProxy)
    alert: AlertSpec | None = None

    def check_of(self, server: ServerSpec) -> CheckSpec | None:
        """The check that applies to server, or None when it is not checked."""
        if not server.checked:
            return None
        return server.check or self.check
    cookie: CookieSpec | None = None  # HAProxy cookie persistence (L7)
    persistent: PersistentSpec | None = None  # IPVS persistence templates
    stick: StickSpec | None = None  # stick on the source address
    redispatch: bool = False  # option redispatch: a retry may leave the persisted server
    ipvs: IpvsSpec | None = None  # the kernel service's protocol/fwmark/one-packet (None: tcp)
    # http-request rules applied to the requests routed here, after the frontend's (HAProxy's
    # backend http-request); their conditions' ACLs are the backend's own.
    rules: tuple[RuleSpec, ...] = ()
    # The stats page served in-band: a request routed here whose URI starts with stats.uri is
    # answered with the page (bind None), the others are proxied.
    stats: StatsSpec | None = None
    httpclose: bool = False  # option httpclose: both connections close after each response

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
    # Request rules in order (header edits, redirects), then routes: the first whose condition
    # holds picks the backend, else default_backend (engine/config/rules.py).
    rules: tuple[RuleSpec, ...] = ()
    routes: tuple[RouteSpec, ...] = ()
    forward: str = "userspace"  # L4 data path: userspace (the relay) | ipvs (the kernel) | auto
    stats: StatsSpec | None = None  # the stats page in-band on this frontend's binds (see BackendSpec)
    httpclose: bool = False  # option httpclose: both connections close after each response


FORWARDS = ("userspace", "ipvs", "auto")
FORWARD_METHODS = ("masq", "gate", "ipip")
IPVS_PROTOCOLS = ("tcp", "udp", "fwm")


@dataclass(frozen=True, slots=True)
class IpvsSpec:
    """How a backend's virtual service looks in the kernel's IPVS table (ipvsadm -A): the
    scheduler, its sh/mh flags (scheduler-options) and persistence come from the backend."""

    protocol: str = "tcp"  # tcp | udp | fwm (firewall mark: one service for every bind)
    fwmark: int = 0
    one_packet: bool = False  # UDP: schedule every datagram on its own (ipvsadm -o)
    where: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class IpvsSyncSpec:
    """A connection synchronisation daemon (ipvsadm --start-daemon)."""

    state: str  # master | backup
    interface: str
    syncid: int = 0
    where: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class IpvsGlobalSpec:
    """The director-wide IPVS settings: connection timeouts (ipvsadm --set; 0 leaves the kernel's)
    and sync daemons. Applied at start when any service is served by the kernel."""

    tcp: float = 0.0
    tcpfin: float = 0.0
    udp: float = 0.0
    sync: tuple[IpvsSyncSpec, ...] = ()
    where: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class StatsSpec:
    """HAProxy's `stats` settings: the page (and /metrics) on its own listener, and the
    runtime API socket (`stats socket PATH level admin`)."""

    bind: BindSpec | None = None  # its own listener; None on a proxy's stats (served in-band)
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
    workers: int = 1  # processes sharing the listeners (SO_REUSEPORT); `run --workers` overrides
    autoreload: bool = False  # reload when the file changes (ldirectord autoreload; `run --watch`)
    ipvs: IpvsGlobalSpec | None = None  # kernel IPVS timeouts and sync daemons

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
