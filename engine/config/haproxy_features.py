"""haproxy.cfg keywords of the features beyond plain balancing: health checks (`check`,
`option httpchk`, `http-check expect`), cookie and source persistence, `option redispatch`,
backups, TLS and PROXY on binds and servers, and the stats page. Each handler fills the
section's settings; haproxy.py turns them into the model. Kept apart so that haproxy.py stays
about sections and lexing."""
from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Any

from virtserve.engine.config import persistence
from virtserve.engine.config.model import (
    BindSpec,
    CheckSpec,
    ConfigError,
    ServerSpec,
    StatsSpec,
    StickSpec,
    TlsBindSpec,
    TlsServerSpec,
)

if TYPE_CHECKING:
    from virtserve.engine.config.haproxy import _Parser, _Proxy

# HAProxy's check defaults: inter 2s, rise 2, fall 3.
DEFAULT_CHECK = CheckSpec(type="connect", interval=2.0, rise=2, fall=3)


def _value(params: list[str], i: int, where: str, what: str) -> str:
    if i + 1 >= len(params):
        raise ConfigError(where, f"{what} needs a value")
    return params[i + 1]


def server_options(p: _Parser, proxy: _Proxy, name: str, params: list[str], where: str) -> dict[str, Any]:
    """ServerSpec fields from a `server` line's options (check settings kept aside)."""
    from virtserve.engine.config.haproxy import _int, _time

    fields: dict[str, Any] = {}
    check: dict[str, Any] = {}
    tls: dict[str, Any] | None = None
    checked = False
    i = 0
    while i < len(params):
        word = params[i]
        step = 2
        if word in ("weight", "maxconn"):
            fields[word] = _int([_value(params, i, where, word)], where, f"server {name} {word}")
        elif word == "backup":
            fields["backup"], step = True, 1
        elif word == "check":
            checked, step = True, 1
        elif word == "inter":
            check["interval"] = _time(_value(params, i, where, word), where, f"server {name} inter")
        elif word in ("rise", "fall"):
            check[word] = _int([_value(params, i, where, word)], where, f"server {name} {word}")
        elif word == "port":
            check["port"] = _int([_value(params, i, where, word)], where, f"server {name} port")
        elif word == "check-ssl":
            check["type"], step = "https", 1
        elif word in ("fastinter", "downinter"):
            p.note(where, f"server {word} is not used by virtserve: checks run every `inter`")
        elif word == "cookie":
            fields["cookie"] = _value(params, i, where, word)
        elif word == "slowstart":
            proxy.set("slowstart", _time(_value(params, i, where, word), where, f"server {name} slowstart"), where)
        elif word in ("send-proxy", "send-proxy-v2"):
            fields["send_proxy"], step = ("v2" if word.endswith("v2") else "v1"), 1
        elif word == "ssl":
            tls, step = tls or {}, 1
        elif word == "verify":
            tls = tls or {}
            tls["verify"] = _value(params, i, where, word)
        elif word in ("ca-file", "sni", "crt", "ciphers"):
            tls = tls or {}
            value = _value(params, i, where, word)
            if word == "sni":  # HAProxy takes an expression: str(NAME) is the constant form
                m = re.fullmatch(r"str\((.*)\)", value)
                value = m.group(1) if m else value
            tls[word.replace("-", "_")] = value
        elif word == "disabled":
            raise ConfigError(where, f"server {name}: `disabled` is not supported yet: leave the server "
                                     "out, or put it in maintenance with `virtserve ctl`")
        else:
            raise ConfigError(where, f"server {name}: option {word!r} is not supported yet")
        i += step
    if tls is not None:
        fields["ssl"] = TlsServerSpec(where=where, **tls)
    fields["checked"] = checked
    if check:
        fields["check_overrides"] = check
    return fields


def finish_servers(proxy: _Proxy, servers: list[tuple[dict[str, Any], ServerSpec]]) -> tuple[ServerSpec, ...]:
    """Apply the section's check to the servers that have `check`, with their own inter/rise/fall."""
    base = backend_check(proxy)
    any_checked = any(server.checked for _, server in servers)
    out = []
    for overrides, server in servers:
        if overrides and server.checked:
            server = dataclasses.replace(server, check=dataclasses.replace(base, **overrides))
        elif not any_checked:
            # No server is checked, so the backend has no check: keep the model's plain form.
            server = dataclasses.replace(server, checked=True)
        out.append(server)
    return tuple(out)


def backend_check(proxy: _Proxy) -> CheckSpec:
    s = proxy.settings
    check = s.get("httpchk") or DEFAULT_CHECK
    timeouts = s["timeouts"]
    return dataclasses.replace(check, timeout=timeouts.get("connect", 0.0) or check.timeout,
                               negotiate_timeout=s.get("check_timeout", 0.0) or check.negotiate_timeout)


def kw_option_httpchk(p: _Parser, proxy: _Proxy, args: list[str], where: str) -> None:
    """`option httpchk [METHOD] [URI] [VERSION]`; a Host header smuggled in VERSION as in old
    configs (`HTTP/1.1\\r\\nHost:\\ www`) becomes the check's virtual host."""
    method, uri, version = "OPTIONS", "/", ""
    if len(args) == 1:
        uri = args[0]
    elif len(args) >= 2:
        method, uri = args[0], args[1]
        version = " ".join(args[2:])
    host = ""
    m = re.search(r"host:\s*(\S+)", version.replace("\\r\\n", "\r\n"), re.IGNORECASE)
    if m:
        host = m.group(1)
    current = proxy.settings.get("httpchk") or DEFAULT_CHECK
    proxy.set("httpchk", dataclasses.replace(current, type="http", method=method.upper(), request=uri,
                                             virtualhost=host), where)


def kw_http_check(p: _Parser, proxy: _Proxy, args: list[str], where: str) -> None:
    """`http-check expect [!] status N | string S | rstring R`."""
    if args[:1] != ["expect"] or len(args) < 3:
        raise ConfigError(where, "http-check: only `http-check expect status|string|rstring VALUE` is supported")
    kind, value = args[1], " ".join(args[2:])
    current = proxy.settings.get("httpchk") or dataclasses.replace(DEFAULT_CHECK, type="http")
    if kind == "status":
        codes = tuple(int(c) for c in re.findall(r"[0-9]{3}", value))
        if not codes:
            raise ConfigError(where, f"http-check expect status needs a status code, got {value!r}")
        current = dataclasses.replace(current, status=codes)
    elif kind == "string":
        current = dataclasses.replace(current, receive=re.escape(value))
    elif kind == "rstring":
        current = dataclasses.replace(current, receive=value)
    else:
        raise ConfigError(where, f"http-check expect {kind!r} is not supported (status, string, rstring)")
    proxy.set("httpchk", current, where)


def kw_cookie(p: _Parser, proxy: _Proxy, args: list[str], where: str) -> None:
    try:
        proxy.set("cookie", persistence.cookie(" ".join(args)), where)
    except ValueError as exc:
        raise ConfigError(where, f"cookie: {exc}") from None


def kw_stick(p: _Parser, proxy: _Proxy, args: list[str], where: str) -> None:
    """`stick-table type ip size N expire T` and `stick on src`: source persistence."""
    from virtserve.engine.config.haproxy import _time

    spec = proxy.settings.get("stick") or StickSpec(where=where)
    if args and args[0] == "on":
        if args[1:] != ["src"]:
            raise ConfigError(where, "only `stick on src` is supported")
    else:  # stick-table
        words = dict(zip(args[::2], args[1::2]))
        if words.get("type", "ip") not in ("ip", "ipv6"):
            raise ConfigError(where, "stick-table: only type ip is supported")
        if "size" in words:
            size = words["size"].lower()
            mult = {"k": 1000, "m": 1000_000}.get(size[-1:], 1)
            spec = dataclasses.replace(spec, size=int(size.rstrip("km")) * mult)
        if "expire" in words:
            spec = dataclasses.replace(spec, expire=_time(words["expire"], where, "stick-table expire"))
    proxy.set("stick", spec, where)


def bind_options(proxy: _Proxy, host: str, port: int, params: list[str], where: str) -> BindSpec:
    """`bind ADDR [ssl crt FILE [crt FILE]...] [accept-proxy] [alpn X] [ssl-min-ver V] [ciphers C]
    [verify none|optional|required] [ca-file F]`."""
    tls: dict[str, Any] = {}
    accept_proxy = ssl = False
    crts: list[str] = []
    i = 0
    while i < len(params):
        word = params[i]
        if word == "ssl":
            ssl, i = True, i + 1
            continue
        if word == "accept-proxy":
            accept_proxy, i = True, i + 1
            continue
        value = _value(params, i, where, f"bind {word}")
        if word == "crt":
            crts.append(value)
        elif word == "alpn":
            tls["alpn"] = tuple(value.split(","))
        elif word == "ssl-min-ver":
            tls["min_version"] = {"TLSv1.2": "TLSv1.2", "TLSv1.3": "TLSv1.3"}.get(value, value)
        elif word in ("ciphers", "verify", "ca-file"):
            tls[word.replace("-", "_")] = value
        else:
            raise ConfigError(where, f"bind option {word!r} is not supported yet")
        i += 2
    if crts and not ssl:
        raise ConfigError(where, "bind: crt without ssl")
    spec = TlsBindSpec(crt=tuple(crts), where=where, **tls) if ssl else None
    if ssl and not crts:
        raise ConfigError(where, "bind ... ssl needs crt FILE (a PEM with chain and key, or a directory)")
    return BindSpec(host, port, where=where, ssl=spec, accept_proxy=accept_proxy)


def kw_stats(p: _Parser, proxy: _Proxy, args: list[str], where: str) -> None:
    """`stats enable|uri|realm|auth|hide-version|refresh|admin`: in a section of its own
    (`listen stats` + `bind`) they make the stats listener; in a proxy that serves traffic (or
    in `defaults`, for every http proxy) the page is served in-band on its binds."""
    from virtserve.engine.config.haproxy import _time

    if not args:
        raise ConfigError(where, "stats needs a keyword (enable, uri, realm, auth, hide-version, admin)")
    spec: StatsSpec = proxy.settings.get("stats") or StatsSpec(where=where)
    word, rest = args[0], args[1:]
    if word == "enable":
        pass
    elif word == "uri" and rest:
        spec = dataclasses.replace(spec, uri=rest[0])
    elif word == "realm" and rest:
        spec = dataclasses.replace(spec, realm=" ".join(rest))
    elif word == "auth" and rest and ":" in rest[0]:
        user, _, password = rest[0].partition(":")
        spec = dataclasses.replace(spec, auth=spec.auth + ((user, password),))
    elif word == "hide-version":
        spec = dataclasses.replace(spec, hide_version=True)
    elif word == "refresh" and rest:
        spec = dataclasses.replace(spec, refresh=_time(rest[0], where, "stats refresh"))
    elif word in ("show-legends", "show-node", "show-desc", "show-modules", "scope"):
        p.note(where, f"stats {word} has no effect in virtserve: the page shows every proxy")
    elif word == "admin":
        if rest not in (["if", "TRUE"], ["if", "LOCALHOST"], []):
            p.note(where, f"stats admin {' '.join(rest)}: conditions are not evaluated; admin is on")
        spec = dataclasses.replace(spec, admin=True)
    else:
        raise ConfigError(where, f"unsupported stats keyword {' '.join(args)!r}")
    proxy.set("stats", spec, where)


# --- routing and request rules: acl, use_backend, http-request, legacy reqadd -------------------

def _condition(proxy: _Proxy, words: list[str], where: str) -> Any:
    from virtserve.engine.config.conditions import parse_condition

    if not words:
        return None
    try:
        return parse_condition(words, proxy.settings.get("acls", {}))
    except ValueError as exc:
        raise ConfigError(where, str(exc)) from None


def kw_acl(p: _Parser, proxy: _Proxy, args: list[str], where: str) -> None:
    from virtserve.engine.config.conditions import define_acl

    if len(args) < 2:
        raise ConfigError(where, "acl needs a name and a criterion, like `acl is_api path_beg /api`")
    try:
        proxy.settings["acls"] = define_acl(proxy.settings.get("acls", {}), args[0], args[1:], where)
    except ValueError as exc:
        raise ConfigError(where, f"acl {args[0]}: {exc}") from None


def kw_use_backend(p: _Parser, proxy: _Proxy, args: list[str], where: str) -> None:
    from virtserve.engine.config.rules import RouteSpec

    if not args:
        raise ConfigError(where, "use_backend needs a backend name")
    route = RouteSpec(args[0], _condition(proxy, args[1:], where), where=where)
    proxy.settings["routes"] = (*proxy.settings.get("routes", ()), route)


def _split_at_condition(args: list[str]) -> tuple[list[str], list[str]]:
    for i, word in enumerate(args):
        if word in ("if", "unless"):
            return args[:i], args[i:]
    return args, []


def kw_http_request(p: _Parser, proxy: _Proxy, args: list[str], where: str) -> None:
    """`http-request add-header|set-header|del-header NAME [VALUE]` and `http-request redirect
    location|prefix|scheme TARGET [code N] [drop-query] [append-slash]`, each [if|unless COND]."""
    from virtserve.engine.config.rules import HeaderRuleSpec, RedirectRuleSpec

    words, cond = _split_at_condition(args)
    if not words:
        raise ConfigError(where, "http-request needs an action")
    action, rest = words[0], words[1:]
    condition = _condition(proxy, cond, where)
    if action in ("add-header", "set-header") and len(rest) >= 2:
        rule: Any = HeaderRuleSpec(action, rest[0], " ".join(rest[1:]), condition, where=where)
    elif action == "del-header" and len(rest) == 1:
        rule = HeaderRuleSpec(action, rest[0], "", condition, where=where)
    elif action == "redirect" and len(rest) >= 2:
        kwargs: dict[str, Any] = {}
        i = 2
        while i < len(rest):
            if rest[i] == "code" and i + 1 < len(rest) and rest[i + 1].isdigit():
                kwargs["code"], i = int(rest[i + 1]), i + 2
            elif rest[i] in ("drop-query", "append-slash"):
                kwargs[rest[i].replace("-", "_")], i = True, i + 1
            else:
                raise ConfigError(where, f"http-request redirect: unsupported option {rest[i]!r}")
        rule = RedirectRuleSpec(rest[0], rest[1], condition=condition, where=where, **kwargs)
    else:
        raise ConfigError(where, f"http-request {' '.join(words)!r} is not supported "
                                 "(add-header, set-header, del-header, redirect)")
    proxy.settings["rules"] = (*proxy.settings.get("rules", ()), rule)


def kw_reqadd(p: _Parser, proxy: _Proxy, args: list[str], where: str) -> None:
    """The legacy `reqadd "Name: value"` (removed in HAProxy 2.1): an add-header rule."""
    words, cond = _split_at_condition(args)
    line = " ".join(words)
    name, sep, value = line.partition(":")
    if not sep or not name.strip():
        raise ConfigError(where, f"reqadd needs a header line \"Name: value\", got {line!r}")
    p.note(where, f"reqadd is HAProxy's legacy form (removed in 2.1): read as "
                  f"`http-request add-header {name.strip()} {value.strip()}`")
    kw_http_request(p, proxy, ["add-header", name.strip(), value.strip(), *cond], where)
