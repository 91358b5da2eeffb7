"""The checks every config format ends with: ranges and cross-references on the typed model.

They live here rather than in each parser so that TOML, haproxy.cfg and ldirectord.cf accept and
refuse the same things. A parser that knows the line of each setting passes `locate`, so an error
points at `weight = 300` rather than at the start of its section.
"""
from __future__ import annotations

import difflib
import ipaddress
import math
from dataclasses import fields
from typing import Any, Callable

from virtserve.engine.config.model import (
    MODES,
    PROXY_VERSIONS,
    BackendSpec,
    BindSpec,
    Config,
    ConfigError,
    ConfigErrors,
    FrontendSpec,
    ServerSpec,
    Timeouts,
)
from virtserve.engine.config.validate_checks import check_backend as _check_health
from virtserve.engine.config.validate_rules import check_rules
from virtserve.engine.config.validate_proxy import check_proxy
from virtserve.schedulers.base import Needs, lookup as scheduler_class
from virtserve.schedulers.base import names as scheduler_names

# (spec, field) -> "file:line" of that field's setting, or "" when unknown. `field` is a model
# field name; a timeout is "timeouts.<name>", e.g. "timeouts.http_request".
Locate = Callable[[object, str], str]

WEIGHT_MAX = 256  # HAProxy's limit; LVS allows more, but one range for every format


def validate(config: Config, *, locate: Locate | None = None) -> None:
    """Raise ConfigErrors listing every problem found (one per section and kind of check, in
    document order), so that `virtserve check` shows them all at once."""

    def at(spec: object, field: str) -> str:
        return (locate(spec, field) if locate else "") or getattr(spec, "where", "") or config.source

    errors: list[ConfigError] = []

    def collect(check: Callable[[], object]) -> None:
        try:
            check()
        except ConfigErrors as exc:
            errors.extend(exc.errors)
        except ConfigError as exc:
            errors.append(exc)

    def check_top() -> None:
        if not (isinstance(config.grace, (int, float)) and math.isfinite(config.grace) and config.grace >= 0):
            raise ConfigError(at(config, "grace"), f"grace must be a time of 0 or more, got {config.grace!r}")

    def check_workers() -> None:
        if not (isinstance(config.workers, int) and 1 <= config.workers <= 256):
            raise ConfigError(at(config, "workers"), f"workers must be from 1 to 256, got {config.workers!r}")

    collect(check_top)
    collect(check_workers)

    backends: dict[str, BackendSpec] = {}
    for backend in config.backends:
        collect(lambda: _check_name(backend, "backend", backends, at))
        collect(lambda: (_check_backend(backend, at), check_proxy(backend, at)))
        backends.setdefault(backend.name, backend)  # a broken one still exists for its frontends

    frontends: dict[str, FrontendSpec] = {}
    for frontend in config.frontends:
        collect(lambda: _check_name(frontend, "frontend", frontends, at))
        collect(lambda: (_check_frontend(frontend, backends, at), check_proxy(frontend, at)))
        frontends.setdefault(frontend.name, frontend)

    collect(lambda: _check_binds_unique(config.frontends, at))
    if errors:
        raise ConfigErrors(sorted(errors, key=_line_of))


def _line_of(error: ConfigError) -> tuple[str, int]:
    file, _, line = error.where.rpartition(":")
    return (file, int(line)) if line.isdigit() else (error.where, 0)


def _check_name(spec, kind: str, seen: dict, at, scope: str = "") -> None:
    if not isinstance(spec.name, str) or not spec.name:
        raise ConfigError(at(spec, "name"), f"a {kind}{scope} needs a non-empty name")
    first = seen.get(spec.name)
    if first is not None:
        raise ConfigError(
            at(spec, "name"), f"duplicate {kind} name {spec.name!r}{scope}{_also(first.where)}"
        )


def _check_backend(backend: BackendSpec, at) -> None:
    what = f"backend {backend.name!r}"
    _check_mode(backend, what, at)
    _check_int(backend, "retries", 0, None, what, at)
    _check_timeouts(backend, what, at)
    known = scheduler_names()
    if backend.scheduler not in known:
        raise ConfigError(
            at(backend, "scheduler"),
            f"{what}: unknown scheduler {backend.scheduler!r}"
            f"{_did_you_mean(str(backend.scheduler), known)} (known: {', '.join(known)})",
        )
    _check_scheduler_fits(backend, what, at)
    servers: dict[str, ServerSpec] = {}
    for server in backend.servers:
        _check_name(server, "server", servers, at, scope=f" in {what}")
        _check_server(server, f"server {server.name!r} in {what}", at)
        servers[server.name] = server
    _check_health(backend, at)


def _check_scheduler_fits(backend: BackendSpec, what: str, at) -> None:
    """The algorithm's options, its mode, and the persistence settings, checked before start."""
    cls = scheduler_class(backend.scheduler)
    try:
        cls([], backend.options)
    except (ValueError, TypeError) as exc:
        field = "scheduler_options" if backend.scheduler_options else "scheduler"
        raise ConfigError(at(backend, field), f"{what}: scheduler {backend.scheduler}: {exc}") from None
    if cls.needs & Needs.HTTP and backend.mode != "http":
        raise ConfigError(at(backend, "scheduler"), f"{what}: scheduler {backend.scheduler} reads HTTP requests: it needs mode http")
    if cls.needs & Needs.PAYLOAD and backend.mode != "tcp":
        raise ConfigError(at(backend, "scheduler"), f"{what}: scheduler {backend.scheduler} reads the first client bytes: it needs mode tcp")
    kinds = [k for k in ("cookie", "persistent", "stick") if getattr(backend, k) is not None]
    if len(kinds) > 1:
        raise ConfigError(at(backend, kinds[1]), f"{what}: choose one of cookie, persistent and stick, not {' and '.join(kinds)}")
    if backend.cookie is not None and backend.mode != "http":
        raise ConfigError(at(backend, "cookie"), f"{what}: cookie persistence needs mode http (use persistent or stick in mode tcp)")
    values: dict[str, str] = {}
    if backend.cookie is not None:
        for server in backend.servers:
            value = server.cookie or server.name
            if value in values:
                raise ConfigError(at(server, "cookie"), f"{what}: servers {values[value]!r} and {server.name!r} share cookie value {value!r}")
            if any(c in value for c in " ;,|~="):
                raise ConfigError(at(server, "cookie"), f"{what}: server {server.name!r}: cookie value {value!r} may not hold spaces or ; , | ~ =")
            values[value] = server.name


def _check_server(server: ServerSpec, what: str, at) -> None:
    if not isinstance(server.address, str) or server.address in ("", "*"):
        raise ConfigError(
            at(server, "address"), f"{what}: needs the address of a real server, got {server.address!r}"
        )
    _check_int(server, "port", 1, 65535, what, at)
    _check_int(server, "weight", 0, WEIGHT_MAX, what, at)
    _check_int(server, "maxconn", 0, None, what, at)
    if server.send_proxy not in ("", *PROXY_VERSIONS):
        raise ConfigError(at(server, "send_proxy"), f"{what}: send-proxy must be v1 or v2, got {server.send_proxy!r}")
    if server.ssl is not None:
        _check_tls(lambda tls: tls.check_server(server.ssl), at(server, "ssl"), what)


def _check_frontend(frontend: FrontendSpec, backends: dict[str, BackendSpec], at) -> None:
    what = f"frontend {frontend.name!r}"
    _check_mode(frontend, what, at)
    _check_int(frontend, "maxconn", 0, None, what, at)
    _check_timeouts(frontend, what, at)
    if not frontend.binds:
        raise ConfigError(at(frontend, "binds"), f"{what} has no bind address to listen on")
    for bind in frontend.binds:
        _check_int(bind, "port", 0, 65535, f"{what}: bind {_hostport(bind)}", at)
        if bind.ssl is not None:
            _check_tls(lambda tls: tls.check_bind(bind.ssl), at(bind, "ssl"), f"{what}: bind {_hostport(bind)} ssl")
    if frontend.redirect is not None and frontend.mode != "http":
        raise ConfigError(at(frontend, "redirect"), f"{what}: redirect needs mode http")
    backend = backends.get(frontend.default_backend)
    if backend is None:
        raise ConfigError(
            at(frontend, "default_backend"),
            f"{what}: backend {frontend.default_backend!r} not found"
            f"{_did_you_mean(str(frontend.default_backend), list(backends))}",
        )
    if backend.mode != frontend.mode:
        raise ConfigError(
            at(frontend, "default_backend"),
            f"mode mismatch: {what} is mode {frontend.mode} but its backend {backend.name!r} "
            f"is mode {backend.mode}{_also(backend.where, 'defined at')}",
        )
    check_rules(frontend, backends, at, _did_you_mean)


def _check_binds_unique(frontends, at) -> None:
    # Port 0 asks the kernel for a fresh port each time, so those never collide.
    bound: dict[tuple[str, int], tuple[FrontendSpec, BindSpec]] = {}
    for frontend in frontends:
        for bind in frontend.binds:
            if bind.port == 0:
                continue
            key = (_normal_host(bind.address), bind.port)
            first = bound.get(key)
            if first is not None:
                owner = "the same frontend" if first[0] is frontend else f"frontend {first[0].name!r}"
                raise ConfigError(
                    at(bind, "address"),
                    f"frontend {frontend.name!r}: {_hostport(bind)} is already bound by "
                    f"{owner}{_also(first[1].where, 'at')}",
                )
            bound[key] = (frontend, bind)


def _check_tls(check: Callable[[Any], object], where: str, what: str) -> None:
    # Certificates are read now, so `virtserve check` finds a wrong key or an expired
    # certificate before a reload would. The TLS module is imported only for configs with TLS.
    from virtserve.engine import tls

    try:
        check(tls)
    except tls.CertError as exc:
        raise ConfigError(where, f"{what}: {exc}") from None


def _check_mode(spec, what: str, at) -> None:
    if spec.mode not in MODES:
        raise ConfigError(
            at(spec, "mode"), f"{what}: mode must be one of {', '.join(MODES)}, got {spec.mode!r}"
        )


def _check_int(spec, field: str, low: int, high: int | None, what: str, at) -> None:
    value = getattr(spec, field)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(at(spec, field), f"{what}: {field} must be a whole number, got {value!r}")
    if high is None and value < low:
        raise ConfigError(at(spec, field), f"{what}: {field} must be {low} or more, got {value}")
    if high is not None and not low <= value <= high:
        raise ConfigError(at(spec, field), f"{what}: {field} {value} is out of range {low}..{high}")


def _check_timeouts(spec, what: str, at) -> None:
    timeouts: Timeouts = spec.timeouts
    for f in fields(Timeouts):
        value = getattr(timeouts, f.name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ConfigError(
                at(spec, f"timeouts.{f.name}"),
                f"{what}: timeout {f.name.replace('_', '-')} must be a time of 0 or more, got {value!r}",
            )


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" — did you mean {close[0]!r}?" if close else ""


def _also(where: str, label: str = "first defined at") -> str:
    return f" ({label} {where})" if where else ""


def _hostport(bind: BindSpec) -> str:
    host = f"[{bind.address}]" if ":" in bind.address else bind.address
    return f"{host}:{bind.port}"


def _normal_host(address: str) -> str:
    try:
        return ipaddress.ip_address(address).compressed
    except ValueError:
        return address.lower()
