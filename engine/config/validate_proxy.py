"""Checks of what a frontend or backend adds to its requests beyond routing: a backend's
http-request rules and the stats page served in-band. (`httpclose` on a mode tcp proxy means
nothing and is let be, as HAProxy does with a warning: `defaults` often set it for every mode.)"""
from __future__ import annotations

from typing import Callable

from virtserve.engine.config.model import BackendSpec, ConfigError, FrontendSpec, StatsSpec
from virtserve.engine.config.validate_rules import check_rule_list


def check_proxy(spec: FrontendSpec | BackendSpec, at: Callable[[object, str], str]) -> None:
    kind = "frontend" if isinstance(spec, FrontendSpec) else "backend"
    what = f"{kind} {spec.name!r}"
    if isinstance(spec, BackendSpec):
        check_rule_list(spec.rules, spec.mode, what, at)
    if spec.stats is not None:
        if spec.mode != "http":
            raise ConfigError(at(spec, "stats"), f"{what}: the stats page needs mode http")
        check_page(spec.stats, what, at(spec, "stats"))
        if spec.stats.bind is not None or spec.stats.socket:
            raise ConfigError(at(spec, "stats"), f"{what}: a proxy's stats page is served on its own binds: "
                                                 "give the page a listener of its own at the top level")


def check_page(stats: StatsSpec, what: str, where: str) -> None:
    """The settings of the page, wherever it is served."""
    if not isinstance(stats.uri, str) or not stats.uri.startswith("/") or any(c in stats.uri for c in " \t\r\n\0"):
        raise ConfigError(where, f"{what}: stats uri must be a path starting with '/', got {stats.uri!r}")
    if any(c in stats.realm for c in '"\r\n\0'):
        raise ConfigError(where, f"{what}: stats realm may not hold quotes or line breaks, got {stats.realm!r}")
    for user, password in stats.auth:
        if not user or ":" in user or any(c in user + password for c in "\r\n\0"):
            raise ConfigError(where, f"{what}: stats auth needs user:password, got {user!r}")
    if not stats.refresh >= 0:
        raise ConfigError(where, f"{what}: stats refresh must be 0 or more, got {stats.refresh!r}")
