"""TOML values for persistence -> the model's CookieSpec, PersistentSpec, StickSpec.

Each converter raises ValueError with what is wrong; native.py adds file:line.

    cookie = "SRV insert indirect nocache"                 # HAProxy's words, or a table:
    cookie = { name = "SRV", mode = "insert", indirect = true, maxidle = "30m" }
    persistent = "300s"                                    # or { timeout = "300s", netmask = "255.255.255.0" }
    stick = true                                           # or { size = 100000, expire = "30m" }
"""
from __future__ import annotations

import ipaddress
from typing import Any

from virtserve.engine.config.model import COOKIE_MODES, CookieSpec, PersistentSpec, StickSpec
from virtserve.engine.config.units import parse_time

_COOKIE_FLAGS = ("indirect", "nocache", "postonly", "preserve", "httponly", "secure")
_COOKIE_VALUES = ("domain", "maxidle", "maxlife")
COOKIE_KEYS = ("name", "mode", *_COOKIE_FLAGS, *_COOKIE_VALUES)


def cookie(value: Any) -> CookieSpec:
    if isinstance(value, str):
        return _cookie_words(value.split())
    if not isinstance(value, dict):
        raise ValueError("expected a cookie name with HAProxy's options (\"SRV insert indirect\") or a table")
    for key in value:
        if key.replace("_", "-") not in COOKIE_KEYS:
            raise ValueError(f"unknown cookie setting {key!r} (allowed: {', '.join(COOKIE_KEYS)})")
    if not isinstance(value.get("name"), str) or not value["name"]:
        raise ValueError("the cookie needs a name: { name = \"SRV\", ... }")
    kwargs: dict[str, Any] = {"name": value["name"]}
    if "mode" in value:
        kwargs["mode"] = _mode(value["mode"])
    for flag in _COOKIE_FLAGS:
        if flag in value:
            if not isinstance(value[flag], bool):
                raise ValueError(f"cookie {flag}: expected true or false, got {value[flag]!r}")
            kwargs[flag] = value[flag]
    if "domain" in value:
        if not isinstance(value["domain"], str):
            raise ValueError(f"cookie domain: expected a string, got {value['domain']!r}")
        kwargs["domain"] = value["domain"]
    for key in ("maxidle", "maxlife"):
        if key in value:
            kwargs[key] = _time(key, value[key])
    return _checked(CookieSpec(**kwargs))


def _cookie_words(words: list[str]) -> CookieSpec:
    if not words:
        raise ValueError("the cookie needs a name")
    kwargs: dict[str, Any] = {"name": words[0]}
    i = 1
    while i < len(words):
        w = words[i]
        if w in COOKIE_MODES:
            kwargs["mode"] = w
        elif w in _COOKIE_FLAGS:
            kwargs[w] = True
        elif w in _COOKIE_VALUES:
            if i + 1 >= len(words):
                raise ValueError(f"cookie {w} needs a value")
            i += 1
            kwargs[w] = words[i] if w == "domain" else _time(w, words[i])
        else:
            raise ValueError(f"unknown cookie option {w!r} (allowed: {', '.join((*COOKIE_MODES, *COOKIE_KEYS[2:]))})")
        i += 1
    return _checked(CookieSpec(**kwargs))


def _checked(spec: CookieSpec) -> CookieSpec:
    if any(c in spec.name for c in " ;=,\t"):
        raise ValueError(f"cookie name {spec.name!r} may not hold spaces, ';', '=' or ','")
    if spec.mode != "insert" and (spec.indirect or spec.maxidle or spec.maxlife or spec.postonly or spec.nocache):
        raise ValueError(f"indirect, nocache, postonly, maxidle and maxlife need mode insert, not {spec.mode}")
    return spec


def _mode(value: Any) -> str:
    if value not in COOKIE_MODES:
        raise ValueError(f"cookie mode must be one of {', '.join(COOKIE_MODES)}, got {value!r}")
    return value


def _time(key: str, value: Any) -> float:
    try:
        return parse_time(value, bare_unit="s")
    except ValueError as exc:
        raise ValueError(f"cookie {key}: {exc}") from None


def persistent(value: Any) -> PersistentSpec:
    if not isinstance(value, dict):
        return PersistentSpec(timeout=parse_time(value, bare_unit="s"))
    for key in value:
        if key not in ("timeout", "netmask", "netmask6"):
            raise ValueError(f"unknown persistent setting {key!r} (allowed: timeout, netmask, netmask6)")
    kwargs: dict[str, Any] = {}
    if "timeout" in value:
        kwargs["timeout"] = parse_time(value["timeout"], bare_unit="s")
    if "netmask" in value:
        kwargs["netmask"] = _prefix(value["netmask"], 32)
    if "netmask6" in value:
        kwargs["netmask6"] = _prefix(value["netmask6"], 128)
    return PersistentSpec(**kwargs)


def _prefix(value: Any, bits: int) -> int:
    """A netmask as ipvsadm -M takes it ("255.255.255.0") or a prefix length (24, "/24")."""
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    elif isinstance(value, str) and value.lstrip("/").isdigit():
        n = int(value.lstrip("/"))
    elif isinstance(value, str) and bits == 32:
        try:
            n = ipaddress.IPv4Network(f"0.0.0.0/{value}").prefixlen
        except ValueError:
            raise ValueError(f"netmask {value!r} is not a netmask like 255.255.255.0 or a prefix length") from None
    else:
        raise ValueError(f"netmask must be a prefix length 0..{bits}, got {value!r}")
    if not 0 <= n <= bits:
        raise ValueError(f"netmask prefix length must be 0..{bits}, got {n}")
    return n


def stick(value: Any) -> StickSpec | None:
    if value is True:
        return StickSpec()
    if value is False:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"expected true or a table {{ size = N, expire = \"30m\" }}, got {value!r}")
    kwargs: dict[str, Any] = {}
    for key, item in value.items():
        if key == "size":
            if isinstance(item, bool) or not isinstance(item, int) or item < 1:
                raise ValueError(f"stick size must be a whole number of 1 or more, got {item!r}")
            kwargs["size"] = item
        elif key == "expire":
            kwargs["expire"] = parse_time(item, bare_unit="s")
        elif key == "on":
            if item != "src":
                raise ValueError(f"stick on {item!r}: only 'src' (the client address) is supported")
        else:
            raise ValueError(f"unknown stick setting {key!r} (allowed: on, size, expire)")
    return StickSpec(**kwargs)
