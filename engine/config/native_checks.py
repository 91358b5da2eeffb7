"""The TOML of health checks and their effects → CheckSpec, AlertSpec and the backend fields.

    [backend.app]
    check = { type = "http", request = "/health", receive = "ok", interval = "2s", timeout = "1s",
              rise = 2, fall = 3 }            # or check = "connect" / true (connect) / false
    quiescent = false                          # true: a failed server keeps its place at weight 0
    slowstart = "30s"
    allbackups = true
    fallback = "127.0.0.1:9000"                # or a server table
    on-marked-down = "shutdown-sessions"
    alert = { to = ["ops@example.com"], relay = "127.0.0.1:25", freq = "5m", status = "all" }
    servers = [ { address = "10.0.0.1:80", check = false },            # never checked
                { address = "10.0.0.2:80", check = { port = 8081 } } ]  # overrides the backend's

A server's check table is laid over the backend's key by key. Called by native.py's builder.
"""
from __future__ import annotations

import re
import shlex
from typing import TYPE_CHECKING, Any

from virtserve.engine.config.model import ALERT_STATUSES, CHECK_TYPES, AlertSpec, CheckSpec, ServerSpec
from virtserve.engine.config.units import split_host_port

if TYPE_CHECKING:
    from virtserve.engine.config.native import _Builder, _Table

CHECK_KEYS = ("type", "interval", "timeout", "negotiate-timeout", "rise", "fall", "port", "request",
              "receive", "method", "virtualhost", "status", "send", "expect", "command")
ALERT_KEYS = ("to", "relay", "from", "freq", "status")
BACKEND_CHECK_KEYS = ("check", "quiescent", "slowstart", "allbackups", "fallback", "on-marked-down", "alert")
ON_MARKED_DOWN = ("shutdown-sessions", "none")


def backend_kwargs(builder: _Builder, table: _Table) -> dict[str, Any]:
    from virtserve.engine.config.native import _bool, _time

    kwargs: dict[str, Any] = {}
    if "check" in table:
        kwargs["check"] = check_spec(builder, table, {})
    if "quiescent" in table:
        kwargs["quiescent"] = table.get("quiescent", _bool)
    if "slowstart" in table:
        kwargs["slowstart"] = table.get("slowstart", _time)
    if "allbackups" in table:
        kwargs["allbackups"] = table.get("allbackups", _bool)
    if "on-marked-down" in table:
        kwargs["shutdown_sessions"] = table.get("on-marked-down", _on_marked_down) == "shutdown-sessions"
    if "fallback" in table:
        kwargs["fallback"] = fallback(builder, table)
    if "alert" in table:
        kwargs["alert"] = alert_spec(builder, table)
    return kwargs


def server_kwargs(builder: _Builder, table: _Table, backend: _Table | None) -> dict[str, Any]:
    """A server's `check`: false (never checked), true (the backend's), or a table of overrides."""
    if "check" not in table:
        return {}
    value = table.raw["check"][1]
    if isinstance(value, bool):
        return {"checked": value}
    if not isinstance(value, dict):
        raise builder.doc.error(table.path_of("check"),
                                f"'check' in {table.label}: expected true, false or a table, got {value!r}")
    base = _raw_check(backend) if backend is not None and "check" in backend else {}
    return {"check": check_spec(builder, table, base)}


def _raw_check(table: _Table) -> dict[str, Any]:
    value = table.raw["check"][1]
    if isinstance(value, dict):
        return {k.replace("_", "-"): v for k, v in value.items()}
    if isinstance(value, str):
        return {"type": value}
    return {}


def check_spec(builder: _Builder, table: _Table, base: dict[str, Any]) -> CheckSpec | None:
    from virtserve.engine.config.native import _Table as Table

    doc, path = builder.doc, table.path_of("check")
    value = table.raw["check"][1]
    if value is False:
        return None
    if value is True:
        value = {}
    elif isinstance(value, str):
        value = {"type": value}
    elif not isinstance(value, dict):
        raise doc.error(path, f"'check' in {table.label}: expected a table like "
                              f'{{ type = "http", request = "/health" }}, a type or true/false, got {value!r}')
    label = f"the check of {table.label}"
    sub = Table(doc, path, value, CHECK_KEYS, label)
    merged = {**base, **{k: v for k, (_, v) in sub.raw.items()}}
    kwargs: dict[str, Any] = {}
    for key, raw in merged.items():
        convert = _CHECK_CONVERT[key]
        try:
            kwargs[key.replace("-", "_")] = convert(raw)
        except ValueError as exc:
            where = path + (sub.raw[key][0],) if key in sub.raw else path
            raise doc.error(where, f"{key!r} in {label}: {exc}") from None
    spec = CheckSpec(where=doc.at(path), **kwargs)
    builder.paths[id(spec)] = path
    return spec


def fallback(builder: _Builder, table: _Table) -> ServerSpec:
    path, value = table.path_of("fallback"), table.raw["fallback"][1]
    if isinstance(value, dict):
        return builder.server(0, path, {"name": "fallback", **value}, table.label)
    try:
        host, port = table.get("fallback", _host_port)
    except ValueError as exc:
        raise builder.doc.error(path, f"fallback in {table.label}: {exc}") from None
    spec = ServerSpec("fallback", host, port, where=builder.doc.at(path))
    builder.paths[id(spec)] = path
    return spec


def alert_spec(builder: _Builder, table: _Table) -> AlertSpec:
    from virtserve.engine.config.native import _Table as Table
    from virtserve.engine.config.native import _time

    path = table.path_of("alert")
    label = f"the alert of {table.label}"
    sub = Table(builder.doc, path, table.raw["alert"][1], ALERT_KEYS, label)
    if "to" not in sub:
        raise builder.doc.error(path, f'{label} has no recipient: add to = ["ops@example.com"]')
    kwargs: dict[str, Any] = {"to": sub.get("to", _strings)}
    if "relay" in sub:
        host, port = sub.get("relay", split_host_port)
        kwargs["relay"], kwargs["relay_port"] = host, port or 25
    if "from" in sub:
        kwargs["sender"] = sub.get("from", _text)
    if "freq" in sub:
        kwargs["freq"] = sub.get("freq", _time)
    if "status" in sub:
        kwargs["status"] = sub.get("status", _alert_status)
    spec = AlertSpec(where=builder.doc.at(path), **kwargs)
    builder.paths[id(spec)] = path
    return spec


# --- value converters: raise ValueError with a message for the user ---------------------------

def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def _whole(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected a whole number, got {value!r}")
    return value


def _strings(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(x, str) and x for x in items):
        raise ValueError(f"expected a string or a non-empty list of strings, got {value!r}")
    return tuple(items)


def _check_type(value: Any) -> str:
    if value not in CHECK_TYPES:
        raise ValueError(f"expected one of {', '.join(CHECK_TYPES)}, got {value!r}")
    return value


def _regex(value: Any) -> str:
    text = _text(value)
    try:
        re.compile(text)
    except re.error as exc:
        raise ValueError(f"bad regular expression {text!r}: {exc}") from None
    return text


def _codes(value: Any) -> tuple[int, ...]:
    if value == []:
        return ()  # any 2xx or 3xx: a server's own check undoing its backend's codes
    items = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(items, list) or not items or not all(
            isinstance(x, int) and not isinstance(x, bool) and 100 <= x <= 599 for x in items):
        raise ValueError(f"expected an HTTP status (100..599) or a list of them, got {value!r}")
    return tuple(items)


def _command(value: Any) -> tuple[str, ...]:
    if value == []:
        return ()  # a server's own check that runs no command, under a backend's external one
    if isinstance(value, str):
        value = shlex.split(value)
    return _strings(value)


def _time_value(value: Any) -> float:
    from virtserve.engine.config.native import _time

    return _time(value)


def _host_port(value: Any) -> tuple[str, int]:
    host, port = split_host_port(_text(value))
    if port is None:
        raise ValueError(f"{value!r} has no port: write 'host:port'")
    return host, port


def _on_marked_down(value: Any) -> str:
    if value not in ON_MARKED_DOWN:
        raise ValueError(f"expected one of {', '.join(map(repr, ON_MARKED_DOWN))}, got {value!r}")
    return value


def _alert_status(value: Any) -> tuple[str, ...]:
    items = _strings(value)
    for item in items:
        if item not in ALERT_STATUSES:
            raise ValueError(f"expected {', '.join(ALERT_STATUSES)} (or a list of them), got {item!r}")
    return items


_CHECK_CONVERT = {
    "type": _check_type, "interval": _time_value, "timeout": _time_value,
    "negotiate-timeout": _time_value, "rise": _whole, "fall": _whole, "port": _whole,
    "request": _text, "receive": _regex, "method": _text, "virtualhost": _text, "status": _codes,
    "send": _text, "expect": _regex, "command": _command,
}
