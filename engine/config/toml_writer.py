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

from virtserve.engine.config.model import BackendSpec, Config, FrontendSpec, IpvsGlobalSpec, ServerSpec

# model field -> native key, where they differ by more than underscores and dashes
_KEY = {"default_backend": "backend", "binds": "bind", "timeouts": "timeout"}
_SKIP = {"where", "name", "source"}


def to_toml(config: Config) -> str:
    out: list[str] = []
    if config.grace != Config.__dataclass_fields__["grace"].default:
        out.append(f"grace = {_value(config.grace)}\n")
    if config.ipvs is not None:
        out += _ipvs(config.ipvs)
    for fe in config.frontends:
        out.append(f"\n[frontend.{_key(fe.name)}]\n")
        out += _fields(fe, FrontendSpec)
    for be in config.backends:
        out.append(f"\n[backend.{_key(be.name)}]\n")
        out += _fields(be, BackendSpec)
    return "".join(out).lstrip("\n")


def _ipvs(ipvs: IpvsGlobalSpec) -> list[str]:
    """[ipvs]: the kernel's timeouts (those set) and the sync daemons."""
    lines = ["\n[ipvs]\n"]
    timeouts = [f"{key} = {_value(getattr(ipvs, key))}" for key in ("tcp", "tcpfin", "udp") if getattr(ipvs, key)]
    if timeouts:
        lines.append("timeout = { " + ", ".join(timeouts) + " }\n")
    if ipvs.sync:
        lines.append("sync = [" + ", ".join(_inline(daemon) for daemon in ipvs.sync) + "]\n")
    return lines


def _fields(spec: Any, cls: type) -> list[str]:
    lines = []
    if cls is FrontendSpec and (spec.rules or spec.routes):
        lines += _rules(spec)
    for f in dataclasses.fields(cls):
        if f.name in _SKIP or (cls is FrontendSpec and f.name in ("rules", "routes")):
            continue
        value = getattr(spec, f.name)
        if f.name in ("binds", "default_backend", "servers") or not _is_default(f, value):
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
        return _string(_hostport(value.address, value.port))
    if dataclasses.is_dataclass(value):
        return _inline(value)
    raise ValueError(f"{field}: cannot write {value!r} as TOML")


def _rules(fe: FrontendSpec) -> list[str]:
    """acl, rules and routes, conditions written as HAProxy's text (conditions.py reads it back)."""
    from virtserve.engine.config.conditions import format_condition, format_match

    named: dict[str, Any] = {}
    for item in (*fe.rules, *fe.routes):
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
    if fe.routes:
        lines.append("routes = [\n" + "".join(
            f"  {{ backend = {_string(r.backend)}{cond(r)} }},\n" for r in fe.routes) + "]\n")
    return lines


def _server(server: ServerSpec) -> str:
    parts = [f"name = {_string(server.name)}", f"address = {_string(_hostport(server.address, server.port))}"]
    for f in dataclasses.fields(ServerSpec):
        if f.name in _SKIP or f.name in ("address", "port"):
            continue
        value = getattr(server, f.name)
        if not _is_default(f, value):
            parts.append(f"{f.name.replace('_', '-')} = {_value(value, f.name)}")
    return "{ " + ", ".join(parts) + " }"


def _inline(spec: Any) -> str:
    if isinstance(spec, ServerSpec):
        return _server(spec)
    parts = []
    for f in dataclasses.fields(spec):
        if f.name == "where":  # a nested spec's name is a setting (the cookie's name)
            continue
        value = getattr(spec, f.name)
        if not _is_default(f, value):
            parts.append(f"{_key(f.name.replace('_', '-'))} = {_value(value, f.name)}")
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
