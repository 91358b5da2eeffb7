"""Checks of a frontend's rules and routes on the typed model (every format ends here)."""
from __future__ import annotations

import ipaddress
from typing import Callable, Mapping

from virtserve.engine.config.conditions import is_header_name
from virtserve.engine.config.model import BackendSpec, ConfigError, FrontendSpec
from virtserve.engine.config.rules import (
    HEADER_ACTIONS,
    MATCH_METHODS,
    REDIRECT_CODES,
    REDIRECT_TYPES,
    Condition,
    HeaderRuleSpec,
    RedirectRuleSpec,
    RouteSpec,
)

# Headers whose framing or hop the proxy owns: a rule that edits them would break the exchange.
OWNED_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive",
                           "proxy-connection", "te", "trailer", "upgrade"})


def check_rules(frontend: FrontendSpec, backends: Mapping[str, BackendSpec],
                at: Callable[[object, str], str], did_you_mean: Callable[[str, list], str]) -> None:
    what = f"frontend {frontend.name!r}"
    check_rule_list(frontend.rules, frontend.mode, what, at)
    for route in frontend.routes:
        _check_route(route, frontend, backends, what, at(route, "backend"), did_you_mean)


def check_rule_list(rules: tuple, mode: str, what: str, at: Callable[[object, str], str]) -> None:
    """http-request rules of a frontend or backend (`what` names it)."""
    if rules and mode != "http":
        raise ConfigError(at(rules[0], "action"), f"{what}: http-request rules need mode http")
    for rule in rules:
        where = at(rule, "action")
        if isinstance(rule, HeaderRuleSpec):
            _check_header_rule(rule, what, where)
        elif isinstance(rule, RedirectRuleSpec):
            _check_redirect(rule, what, where)
        else:
            raise ConfigError(where, f"{what}: unknown rule {rule!r}")
        _check_condition(rule.condition, mode, what, where)


def _check_header_rule(rule: HeaderRuleSpec, what: str, where: str) -> None:
    if rule.action not in HEADER_ACTIONS:
        raise ConfigError(where, f"{what}: unknown header action {rule.action!r} (known: {', '.join(HEADER_ACTIONS)})")
    if not isinstance(rule.name, str) or not is_header_name(rule.name):
        raise ConfigError(where, f"{what}: {rule.action}: {rule.name!r} is not a valid header name")
    if rule.name.lower() in OWNED_HEADERS:
        raise ConfigError(where, f"{what}: {rule.action} {rule.name}: the proxy owns this header (framing, hop-by-hop)")
    if rule.action == "del-header":
        if rule.value:
            raise ConfigError(where, f"{what}: del-header {rule.name} takes no value, got {rule.value!r}")
    elif not isinstance(rule.value, str) or any(c in rule.value for c in "\r\n\0"):
        raise ConfigError(where, f"{what}: {rule.action} {rule.name}: the value may not hold CR, LF or NUL")


def _check_redirect(rule: RedirectRuleSpec, what: str, where: str) -> None:
    if rule.type not in REDIRECT_TYPES:
        raise ConfigError(where, f"{what}: redirect type must be one of {', '.join(REDIRECT_TYPES)}, got {rule.type!r}")
    if isinstance(rule.code, bool) or rule.code not in REDIRECT_CODES:
        raise ConfigError(where, f"{what}: redirect code must be one of {', '.join(map(str, REDIRECT_CODES))}, got {rule.code!r}")
    target = rule.target
    if not isinstance(target, str) or not target or any(c in target for c in "\r\n\0 \t"):
        raise ConfigError(where, f"{what}: redirect {rule.type} needs a target without blanks or line breaks, got {target!r}")
    if rule.type == "scheme" and not (target[0].isalpha() and all(c.isalnum() or c in "+-." for c in target)):
        raise ConfigError(where, f"{what}: redirect scheme {target!r} is not a URL scheme (like https)")
    if rule.append_slash and not rule.drop_query:
        raise ConfigError(where, f"{what}: append-slash works with drop-query (as in HAProxy): add it")


def _check_route(route: RouteSpec, frontend: FrontendSpec, backends: Mapping[str, BackendSpec],
                 what: str, where: str, did_you_mean: Callable[[str, list], str]) -> None:
    backend = backends.get(route.backend)
    if backend is None:
        raise ConfigError(where, f"{what}: use_backend {route.backend!r}: backend not found"
                                 f"{did_you_mean(str(route.backend), list(backends))}")
    if backend.mode != frontend.mode:
        raise ConfigError(where, f"mode mismatch: {what} is mode {frontend.mode} but use_backend "
                                 f"{backend.name!r} is mode {backend.mode}")
    _check_condition(route.condition, frontend.mode, what, where)


def _check_condition(condition: Condition | None, mode: str, what: str, where: str) -> None:
    if condition is None:
        return
    if not condition.any_of or not all(condition.any_of):
        raise ConfigError(where, f"{what}: a condition needs at least one ACL in each || branch")
    for group in condition.any_of:
        for term in group:
            for match in term.acl.matches:
                label = term.acl.name or "anonymous ACL"
                if match.method not in MATCH_METHODS:
                    raise ConfigError(where, f"{what}: {label}: unknown match method {match.method!r}")
                if mode == "tcp" and match.fetch not in ("src", "always_true", "always_false"):
                    raise ConfigError(where, f"{what}: {label} reads the HTTP request ({match.fetch}): "
                                             "in mode tcp only src can be tested")
                if match.fetch == "src":
                    for value in match.values:
                        try:
                            ipaddress.ip_network(value, strict=False)
                        except ValueError:
                            raise ConfigError(where, f"{what}: {label}: {value!r} is not an address or network") from None
