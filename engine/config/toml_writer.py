"""Config → native TOML (`virtserve convert`): the text that loads back to an equal model.

Generic over the model's dataclasses, so a field added to the model is written without a change
here, as long as the native parser reads it under the field's name with dashes (the few that
differ are in _KEY). Only values that differ from the defaults are written; times are written as
bare numbers (seconds), which the native format reads exactly.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from virtserve.engine.config.model import BackendSpec, Config, FrontendSpec, ServerSpec

# model field -> native key, where they differ by more than underscores and dashes
_KEY = {"default_backend": "backend", "binds": "bind", "timeouts": "timeout"}
_SKIP = {"where", "name", "source"}


def to_toml(config: Config) -> str:
    out: list[str] = []
    for name in ("grace", "workers", "autoreload"):
        value = getattr(config, name)
        if value != Config.__dataclass_fields__[name].default:
            out.append(f"{name} = {_value(value)}\n")
    out += _top_tables(config)
    for fe in config.frontends:
        out.append(f"\n[frontend.{_key(fe.name)}]\n")
        out += _fields(fe, FrontendSpec)
    for be in config.backends:
        out.append(f"\n[backend.{_key(be.name)}]\n")
        out += _fields(be, BackendSpec)
    return "".join(out).lstrip("\n")


def _fields(spec: Any, cls: type) -> list[str]:
    lines = []
    if spec.rules or getattr(spec, "routes", ()):
        lines += _rules(spec)
    for f in dataclasses.fields(cls):
        if f.name in _SKIP or f.name in ("rules", "routes"):
            continue
        value = getattr(spec, f.name)
        if f.name == "shutdown_sessions":
            if value:
                lines.append('on-marked-down = "shutdown-sessions"\n')
        elif f.name == "servers":
            lines.append("servers = [\n" + "".join(f"  {_server(x, spec.check)},\n" for x in value) + "]\n")
        elif f.name in ("binds", "default_backend") or not _is_default(f, value):
            lines.append(f"{_KEY.get(f.name, f.name.replace('_', '-'))} = {_value(value, f.name)}\n")
    return lines


def _is_default(f: dataclasses.Field, value: Any) -> bool:
    if f.default is not dataclasses.MISSING:
        return value == f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return value == f.default_factory()  # type: ignore[misc]
    return False


def _value(value: Any, field: str = "") -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{field}: {value} has no TOML form here")
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if field == "scheduler_options":  # sorted (key, value) pairs -> an inline table
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value) + " }" if value else "{}"
    if isinstance(value, (tuple, list)):
        if field == "servers":
            return "[\n" + "".join(f"  {_server(s)},\n" for s in value) + "]"
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if type(value).__name__ == "BindSpec":
        address = _string(_hostport(value.address, value.port))
        if value.ssl is None and not value.accept_proxy:
            return address
        extra = f", ssl = {_inline(value.ssl)}" if value.ssl is not None else ""
        return f"{{ address = {address}{extra}{', accept-proxy = true' if value.accept_proxy else ''} }}"
    if dataclasses.is_dataclass(value):
        return _inline(value)
    raise ValueError(f"{field}: cannot write {value!r} as TOML")


def _rules(fe: FrontendSpec | BackendSpec) -> list[str]:
    """acl, rules and routes, conditions written as HAProxy's text (conditions.py reads it back)."""
    from virtserve.engine.config.conditions import format_condition, format_match

    named: dict[str, Any] = {}
    routes = getattr(fe, "routes", ())
    for item in (*fe.rules, *routes):
        if item.condition is not None:
            for group in item.condition.any_of:
                for term in group:
                    if term.acl.name and term.acl.name.upper() != term.acl.name:  # not TRUE, LOCALHOST...
                        named[term.acl.name] = term.acl

    def cond(item: Any) -> str:
        c = item.condition
        if c is None:
            return ""
        return f", {'unless' if c.unless else 'if'} = {_string(format_condition(c))}"

    lines = []
    if named:
        acls = ", ".join(f"{_key(n)} = [{', '.join(_string(format_match(m)) for m in a.matches)}]"
                         for n, a in named.items())
        lines.append(f"acl = {{ {acls} }}\n")
    if fe.rules:
        out = []
        for r in fe.rules:
            if type(r).__name__ == "RedirectRuleSpec":
                extra = "".join(f", {k.replace('_', '-')} = {_value(getattr(r, k))}"
                                for k in ("code", "drop_query", "append_slash")
                                if getattr(r, k) != type(r).__dataclass_fields__[k].default)
                out.append(f"  {{ redirect = {{ {r.type} = {_string(r.target)}{extra} }}{cond(r)} }},\n")
            elif r.action == "del-header":
                out.append(f"  {{ del-header = {_string(r.name)}{cond(r)} }},\n")
            else:
                out.append(f"  {{ {r.action} = [{_string(r.name)}, {_string(r.value)}]{cond(r)} }},\n")
        lines.append("rules = [\n" + "".join(out) + "]\n")
    if routes:
        lines.append("routes = [\n" + "".join(
            f"  {{ backend = {_string(r.backend)}{cond(r)} }},\n" for r in routes) + "]\n")
    return lines


def _top_tables(config: Config) -> list[str]:
    """[stats], [log] and [ipvs], as native_admin and native_ipvs read them."""
    out = []
    if config.stats is not None:
        out.append("\n[stats]\n")
        st = config.stats
        if st.bind is not None:
            out.append(f"bind = {_string(_hostport(st.bind.address, st.bind.port))}\n")
        for f in dataclasses.fields(st):
            value = getattr(st, f.name)
            if f.name not in ("where", "bind") and not _is_default(f, value):
                out.append(f"{f.name.replace('_', '-')} = {_setting(f.name, value)}\n")
    if config.log is not None:
        out.append("\n[log]\n")
        out += [f"{f.name} = {_value(getattr(config.log, f.name))}\n" for f in dataclasses.fields(config.log)
                if f.name != "where" and not _is_default(f, getattr(config.log, f.name))]
    if config.ipvs is not None:
        ipvs = config.ipvs
        out.append("\n[ipvs]\n")
        timeouts = [f"{k} = {_value(getattr(ipvs, k))}" for k in ("tcp", "tcpfin", "udp") if getattr(ipvs, k)]
        if timeouts:
            out.append("timeout = { " + ", ".join(timeouts) + " }\n")
        if ipvs.sync:
            out.append("sync = [" + ", ".join(
                f"{{ state = {_string(s.state)}, interface = {_string(s.interface)}, syncid = {s.syncid} }}"
                for s in ipvs.sync) + "]\n")
    return out


def _setting(name: str, value: Any) -> str:
    """A value whose native form is not the model's."""
    if name == "auth":  # stats: "user:password" strings
        return "[" + ", ".join(_string(f"{u}:{p}") for u, p in value) + "]"
    return _value(value, name)


def _alert(alert: Any) -> str:
    parts = [f"to = {_value(alert.to)}"]
    if (alert.relay, alert.relay_port) != ("127.0.0.1", 25):
        parts.append(f"relay = {_string(_hostport(alert.relay, alert.relay_port))}")
    defaults = type(alert).__dataclass_fields__
    if alert.sender != defaults["sender"].default:
        parts.append(f"from = {_string(alert.sender)}")
    for name in ("freq", "status"):
        if getattr(alert, name) != defaults[name].default:
            parts.append(f"{name} = {_value(getattr(alert, name))}")
    return "{ " + ", ".join(parts) + " }"


def _server(server: ServerSpec, base: Any = None) -> str:
    """A server as an inline table; `base` is its backend's check, which a server's own check
    table is read on top of (so the fields the backend sets are written even at their default)."""
    parts = [f"name = {_string(server.name)}", f"address = {_string(_hostport(server.address, server.port))}"]
    for f in dataclasses.fields(ServerSpec):
        if f.name in _SKIP or f.name in ("address", "port", "checked"):
            continue
        value = getattr(server, f.name)
        if f.name == "check":
            if not server.checked:
                parts.append("check = false")
            elif value is not None:
                parts.append(f"check = {_inline(value, keep=_set_fields(base))}")
        elif not _is_default(f, value):
            parts.append(f"{f.name.replace('_', '-')} = {_value(value, f.name)}")
    return "{ " + ", ".join(parts) + " }"


def _set_fields(spec: Any) -> frozenset[str]:
    if spec is None:
        return frozenset()
    return frozenset(f.name for f in dataclasses.fields(spec) if f.name != "where"
                     and not _is_default(f, getattr(spec, f.name)))


def _inline(spec: Any, keep: frozenset[str] = frozenset()) -> str:
    if isinstance(spec, ServerSpec):
        return _server(spec)
    if type(spec).__name__ == "AlertSpec":
        return _alert(spec)
    parts = []
    for f in dataclasses.fields(spec):
        if f.name == "where":  # a nested spec's name is a setting (the cookie's name)
            continue
        value = getattr(spec, f.name)
        if f.name in keep or not _is_default(f, value):
            parts.append(f"{_key(f.name.replace('_', '-'))} = {_setting(f.name, value)}")
    return "{ " + ", ".join(parts) + " }" if parts else "{}"


def _hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _key(name: str) -> str:
    bare = name.replace("-", "").replace("_", "")
    return name if bare.isalnum() and bare.isascii() else _string(name)


def _string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in escaped)
    return f'"{escaped}"'
