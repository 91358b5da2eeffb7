"""ldirectord.cf → Config.

The format of ldirectord(8): `key = value` global directives, then `virtual=` blocks whose
indented lines configure one virtual service and its `real=` servers. Each virtual service
becomes a frontend and a backend of the same name, mode tcp (LVS is layer 4). Defaults are
ldirectord's own, taken from its manual: scheduler wrr, checktype negotiate, checkinterval 10,
checktimeout 5, negotiatetimeout 30, failurecount 1, the service guessed from the port, weight 1,
and quiescent yes (the manual's default; the script's code says no, we follow the manual).
A real server comes back after one good check, as in ldirectord. Every error of the file is
reported as FILE:LINE.
"""
from __future__ import annotations

import ipaddress
import logging
import pathlib
import re
import shlex
from dataclasses import dataclass, field
from os import PathLike
from typing import Any

from virtserve.engine.config.model import (
    AlertSpec,
    BackendSpec,
    BindSpec,
    CheckSpec,
    Config,
    ConfigError,
    ConfigErrors,
    FrontendSpec,
    PersistentSpec,
    ServerSpec,
)
from virtserve.engine.config.units import split_host_port
from virtserve.engine.config.validate import validate

log = logging.getLogger("virtserve.config")

FORWARD_METHODS = {"gate": "gate", "masq": "masq", "ipip": "ipip", "-g": "gate", "-m": "masq", "-i": "ipip"}
_SERVICES = {80: "http", 443: "https", 25: "smtp", 465: "smtp", 587: "smtp"}  # guessed from the port
_SUPPORTED_SERVICES = ("http", "https", "smtp")
_CHECKTYPES = ("negotiate", "connect", "external", "off", "on")
_SCHEDULERS_DEFAULT = "wrr"

# Directives accepted without effect: they steer the ldirectord daemon itself.
_NOTED = {"logfile", "fork", "supervised", "cleanstop", "maintenancedir", "readdquiescent",
          "callback", "execute", "monitorfile", "smtp_timeout", "cleanup"}
# Directives allowed globally and inside a virtual block (a block overrides the global).
_SHARED = {"checktimeout", "negotiatetimeout", "checkinterval", "failurecount", "quiescent",
           "emailalert", "emailalertfreq", "emailalertstatus", "emailalertfrom", "fallback",
           "checktype", "service", "httpmethod", "virtualhost", "scheduler", "protocol",
           "persistent", "netmask", "request", "receive", "checkport", "checkcommand", "smtp"}
_VIRTUAL_ONLY = {"real"}


@dataclass
class _Virtual:
    where: str
    address: str
    port: int
    settings: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (value, where)
    reals: list[tuple[str, int, str, int, str]] = field(default_factory=list)  # addr, port, method, weight, where


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: list[ConfigError] = []
        self.notices: list[str] = []
        self.globals: dict[str, tuple[str, str]] = {}
        self.virtuals: list[_Virtual] = []
        self.autoreload = False

    def parse(self, text: str) -> Config:
        current: _Virtual | None = None
        for lineno, raw in enumerate(text.splitlines(), 1):
            where = f"{self.source}:{lineno}"
            line = _strip_comment(raw)
            if not line.strip():
                continue
            try:
                key, value = _key_value(line, where)
                indented = raw[:1] in (" ", "\t")
                if key == "virtual":
                    current = self._virtual(value, where)
                elif indented and current is not None:
                    self._in_virtual(current, key, value, where)
                elif indented:
                    raise ConfigError(where, f"indented {key!r} outside of a virtual= block")
                else:
                    current = None
                    self._global(key, value, where)
            except ConfigError as exc:
                self.errors.append(exc)
        return self._build()

    def _virtual(self, value: str, where: str) -> _Virtual:
        if re.fullmatch(r"[0-9]+", value):
            raise ConfigError(where, f"virtual={value} is a firewall-mark service: it needs the IPVS "
                                     "backend (forward = \"ipvs\"); the userspace proxy binds an address")
        host, port = _host_port(value, where, "virtual")
        v = _Virtual(where, host, port)
        self.virtuals.append(v)
        return v

    def _in_virtual(self, v: _Virtual, key: str, value: str, where: str) -> None:
        if key == "real":
            v.reals.extend(_reals(value, where))
        elif key in _SHARED:
            _check_value(key, value, where)
            v.settings[key] = (value, where)
        elif key in _NOTED:
            self._note(where, f"{key} has no effect in virtserve")
        else:
            raise ConfigError(where, f"unknown directive {key!r} in a virtual= block")

    def _global(self, key: str, value: str, where: str) -> None:
        if key == "autoreload":
            self.autoreload = _yes(value, where, key)
        elif key in _SHARED:
            _check_value(key, value, where)
            self.globals[key] = (value, where)
        elif key in _NOTED:
            self._note(where, f"{key} has no effect in virtserve")
        elif key in _VIRTUAL_ONLY:
            raise ConfigError(where, f"{key}= must be indented inside a virtual= block")
        else:
            raise ConfigError(where, f"unknown directive {key!r}")

    def _note(self, where: str, message: str) -> None:
        self.notices.append(f"{where}: notice: {message}")

    # --- from directives to the model ------------------------------------------------------------

    def _build(self) -> Config:
        frontends, backends = [], []
        for v in self.virtuals:
            try:
                frontend, backend = self._service(v)
                frontends.append(frontend)
                backends.append(backend)
            except ConfigError as exc:
                self.errors.append(exc)
        if self.errors:
            # A global setting's error comes once per virtual service that reads it: once is enough.
            unique = list({str(e): e for e in self.errors}.values())
            raise ConfigErrors(sorted(unique, key=_line_of))
        config = Config(frontends=tuple(frontends), backends=tuple(backends), source=self.source,
                        **({"autoreload": True} if self.autoreload else {}))
        validate(config)
        return config

    def _service(self, v: _Virtual) -> tuple[FrontendSpec, BackendSpec]:
        setting = {**self.globals, **v.settings}

        def get(key: str, default: str = "") -> tuple[str, str]:
            return setting.get(key, (default, v.where))

        name = f"{v.address}:{v.port}" if ":" not in v.address else f"[{v.address}]:{v.port}"
        protocol, at = get("protocol", "tcp")
        if protocol != "tcp":
            raise ConfigError(at, f"protocol={protocol} needs the IPVS backend; the userspace proxy "
                                  "relays tcp (protocol=tcp)")
        if not v.reals:
            self._note(v.where, f"virtual {name} has no real= servers: clients get closed connections")
        servers = []
        for i, (address, port, method, weight, where) in enumerate(v.reals, 1):
            if method != "masq":
                self._note(where, f"real {address}:{port} {method}: the userspace proxy forwards as NAT (masq)")
            servers.append(ServerSpec(name=f"{address}:{port}", address=address, port=port, weight=weight,
                                      where=where))
        check = self._check(get, v.port)
        backend = BackendSpec(
            name=name, mode="tcp", scheduler=get("scheduler", _SCHEDULERS_DEFAULT)[0],
            servers=tuple(servers), check=check,
            quiescent=_yes(*get("quiescent", "yes"), "quiescent"),
            fallback=self._fallback(get), alert=self._alert(get),
            persistent=self._persistent(get), where=v.where)
        frontend = FrontendSpec(name=name, binds=(BindSpec(v.address, v.port, where=v.where),),
                                default_backend=name, mode="tcp", where=v.where)
        return frontend, backend

    def _check(self, get: Any, port: int) -> CheckSpec | None:
        checktype, at = get("checktype", "negotiate")
        if re.fullmatch(r"[0-9]+", checktype):
            raise ConfigError(at, f"checktype={checktype} (connect checks between negotiate checks) "
                                  "is not supported; use connect or negotiate")
        if checktype not in _CHECKTYPES:
            raise ConfigError(at, f"checktype must be one of {', '.join(_CHECKTYPES)}, got {checktype!r}")
        interval = _number(*get("checkinterval", "10"), "checkinterval")
        timeout = _number(*get("checktimeout", "5"), "checktimeout")
        common: dict[str, Any] = {
            "where": at,  # the checktype= line, else the virtual= line: what validation names
            "interval": interval, "timeout": timeout, "rise": 1,
            "fall": int(_number(*get("failurecount", "1"), "failurecount")),
            "negotiate_timeout": _number(*get("negotiatetimeout", "30"), "negotiatetimeout"),
        }
        checkport, cat = get("checkport")
        if checkport:
            common["port"] = int(_number(checkport, cat, "checkport"))
        if checktype in ("on", "off", "connect"):
            return CheckSpec(type=checktype, **common)
        if checktype == "external":
            command, cat = get("checkcommand")
            if not command:
                raise ConfigError(cat, "checktype=external needs checkcommand=")
            return CheckSpec(type="external", command=tuple(shlex.split(command)), **common)
        service, sat = get("service", _SERVICES.get(port, ""))
        if not service:
            raise ConfigError(sat, f"checktype=negotiate needs service= (no default for port {port})")
        if service not in _SUPPORTED_SERVICES:
            raise ConfigError(sat, f"service={service} negotiate checks are not supported yet "
                                   f"(supported: {', '.join(_SUPPORTED_SERVICES)}); use checktype=connect")
        if service == "smtp":
            return CheckSpec(type="smtp", **common)
        request = get("request", "/")[0]
        method, mat = get("httpmethod", "GET")
        if method not in ("GET", "HEAD"):
            raise ConfigError(mat, f"httpmethod must be GET or HEAD, got {method!r}")
        receive, rat = get("receive")  # a regular expression, as in ldirectord
        try:
            re.compile(receive)
        except re.error as exc:
            raise ConfigError(rat, f"receive is not a valid regular expression: {exc}") from None
        return CheckSpec(type=service, request=request if request.startswith("/") else "/" + request,
                         receive=receive, method=method,
                         virtualhost=get("virtualhost")[0], **common)

    def _fallback(self, get: Any) -> ServerSpec | None:
        value, at = get("fallback")
        if not value:
            return None
        words = value.split()
        host, port = _host_port(words[0], at, "fallback")
        return ServerSpec(name="fallback", address=host, port=port, where=at)

    def _persistent(self, get: Any) -> PersistentSpec | None:
        value, at = get("persistent")
        if not value:
            return None
        netmask, nat = get("netmask", "255.255.255.255")
        try:
            prefix = ipaddress.IPv4Network(f"0.0.0.0/{netmask}").prefixlen
        except ValueError:
            raise ConfigError(nat, f"netmask must be a dotted IPv4 mask like 255.255.255.0, got {netmask!r}") from None
        return PersistentSpec(timeout=_number(value, at, "persistent"), netmask=prefix, where=at)

    def _alert(self, get: Any) -> AlertSpec | None:
        to, at = get("emailalert")
        if not to:
            return None
        relay = get("smtp", "127.0.0.1")[0]
        host, port = (relay.rsplit(":", 1) + ["25"])[:2] if relay.count(":") == 1 else (relay, "25")
        status = tuple(s.strip() for s in get("emailalertstatus", "all")[0].split(","))
        kwargs: dict[str, Any] = {}
        if get("emailalertfrom")[0]:
            kwargs["sender"] = get("emailalertfrom")[0]
        return AlertSpec(to=tuple(a.strip() for a in to.split(",")), relay=host, relay_port=int(port),
                         freq=_number(*get("emailalertfreq", "0"), "emailalertfreq"), status=status,
                         where=at, **kwargs)


# --- lexical ------------------------------------------------------------------------------------

def _strip_comment(line: str) -> str:
    out, quote = [], ""
    for c in line:
        if quote:
            quote = "" if c == quote else quote
        elif c in "\"'":
            quote = c
        elif c == "#":
            break
        out.append(c)
    return "".join(out).rstrip()


def _key_value(line: str, where: str) -> tuple[str, str]:
    key, sep, value = line.strip().partition("=")
    if not sep:
        raise ConfigError(where, f"expected directive=value, got {line.strip()!r}")
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    return key.strip().lower(), value


def _host_port(text: str, where: str, what: str) -> tuple[str, int]:
    try:
        host, port = split_host_port(text)
    except ValueError as exc:
        raise ConfigError(where, f"{what}: {exc}") from None
    if not port:
        raise ConfigError(where, f"{what}: {text!r} needs a port")
    return host, port


def _reals(value: str, where: str) -> list[tuple[str, int, str, int, str]]:
    """`real=ADDR:PORT [gate|masq|ipip] [weight] ["request", "receive"]`; ADDR may be a range
    `192.168.1.2->192.168.1.4`."""
    words = value.split()
    if not words:
        raise ConfigError(where, "real= needs an address:port")
    method, weight = "gate", 1  # ldirectord's default forwarding method is gate (direct routing)
    for word in words[1:]:
        if word in FORWARD_METHODS:
            method = FORWARD_METHODS[word]
        elif re.fullmatch(r"[0-9]+", word):
            weight = int(word)
        else:
            raise ConfigError(where, f"real=: unexpected {word!r} (forwarding method gate|masq|ipip, then a weight)")
    first, arrow, last = words[0].partition("->")
    if not arrow:
        host, port = _host_port(first, where, "real")
        return [(host, port, method, weight, where)]
    last_host, port = _host_port(last, where, "real")
    try:
        start, end = ipaddress.IPv4Address(first), ipaddress.IPv4Address(last_host)
    except ValueError:
        raise ConfigError(where, f"real=: a range needs IPv4 addresses, got {words[0]!r}") from None
    if end < start or int(end) - int(start) > 255:
        raise ConfigError(where, f"real=: bad address range {words[0]!r}")
    return [(str(ipaddress.IPv4Address(a)), port, method, weight, where) for a in range(int(start), int(end) + 1)]


_NUMBERS = {"checktimeout", "negotiatetimeout", "checkinterval", "failurecount", "checkport", "persistent",
            "emailalertfreq"}


def _check_value(key: str, value: str, where: str) -> None:
    """Said at the directive's line, as each virtual service reads it later: so a file's every bad
    value is named, not only the first a service trips on."""
    if key in _NUMBERS and value:
        _number(value, where, key)
    elif key == "quiescent":
        _yes(value, where, key)


def _yes(value: str, where: str, key: str) -> bool:
    if value.lower() in ("yes", "on", "1", "true"):
        return True
    if value.lower() in ("no", "off", "0", "false"):
        return False
    raise ConfigError(where, f"{key} must be yes or no, got {value!r}")


def _number(value: str, where: str, key: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(where, f"{key} must be a number of seconds, got {value!r}") from None
    if number < 0:
        raise ConfigError(where, f"{key} must not be negative")
    return number


def _line_of(error: ConfigError) -> int:
    line = error.where.rpartition(":")[2]
    return int(line) if line.isdigit() else 0


def parse_with_notices(text: str, *, source: str = "<ldirectord.cf>") -> tuple[Config, list[str]]:
    parser = _Parser(source)
    return parser.parse(text), parser.notices


def parse(text: str, *, source: str = "<ldirectord.cf>") -> Config:
    config, notices = parse_with_notices(text, source=source)
    for notice in notices:
        log.warning("%s", notice)
    return config


def load(path: str | PathLike[str]) -> Config:
    path = pathlib.Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read config: {exc.strerror or exc}") from None
    return parse(text, source=str(path))
