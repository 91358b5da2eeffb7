"""The TOML keys of TLS and the PROXY protocol: `bind = [{ ..., ssl = {...} }]`, a server's
`ssl = {...}` / `send-proxy`, a frontend's `redirect`. Kept apart from native.py so that file
stays about sections; the tables come in already checked for unknown keys (native._Table)."""
from __future__ import annotations

import pathlib
from typing import Any

from virtserve.engine.config.model import PROXY_VERSIONS, TLS_VERSIONS, VERIFY, TlsBindSpec, TlsServerSpec

BIND = ("crt", "min-version", "ciphers", "alpn", "verify", "ca-file",
        "client-subject-header", "client-verify-header", "watch")
SERVER = ("verify", "ca-file", "sni", "crt", "min-version", "ciphers", "alpn")
REDIRECT_CODES = (301, 302, 303, 307, 308)


def bind_spec(table: Any, base: pathlib.Path, where: str) -> TlsBindSpec:
    if "crt" not in table:
        raise table.doc.error(table.path, f'{table.label} has no crt: add crt = "site.pem" (or a directory)')
    kwargs: dict[str, Any] = {"crt": table.get("crt", lambda v: tuple(_path(p, base) for p in _strings(v)))}
    _common(table, base, kwargs)
    if "verify" in table:
        kwargs["verify"] = table.get("verify", _choice(VERIFY))
    for key in ("client-subject-header", "client-verify-header"):
        if key in table:
            kwargs[key.replace("-", "_")] = table.get(key, _header_name)
    if "watch" in table:
        from virtserve.engine.config.native import _time
        kwargs["watch"] = table.get("watch", _time)
    return TlsBindSpec(where=where, **kwargs)


def server_spec(table: Any, base: pathlib.Path, where: str) -> TlsServerSpec:
    kwargs: dict[str, Any] = {}
    _common(table, base, kwargs)
    if "verify" in table:
        kwargs["verify"] = table.get("verify", _choice(("none", "required")))
    if "sni" in table:
        kwargs["sni"] = table.get("sni", _string)
    if "crt" in table:
        kwargs["crt"] = table.get("crt", lambda v: _path(_string(v), base))
    return TlsServerSpec(where=where, **kwargs)


def _common(table: Any, base: pathlib.Path, kwargs: dict[str, Any]) -> None:
    if "min-version" in table:
        kwargs["min_version"] = table.get("min-version", _choice(TLS_VERSIONS))
    if "ciphers" in table:
        kwargs["ciphers"] = table.get("ciphers", _string)
    if "alpn" in table:
        kwargs["alpn"] = table.get("alpn", lambda v: () if v == [] else tuple(_strings(v)))
    if "ca-file" in table:
        kwargs["ca_file"] = table.get("ca-file", lambda v: _path(_string(v), base))


def proxy_version(value: Any) -> str:
    """send-proxy = "v1" | "v2" (true means v1, as HAProxy's bare `send-proxy`)."""
    if value is True:
        return "v1"
    return _choice(PROXY_VERSIONS)(value)


def scheme(value: Any) -> str:
    return _choice(("https", "http"))(value)


def redirect_code(value: Any) -> int:
    if value not in REDIRECT_CODES or isinstance(value, bool):
        raise ValueError(f"expected one of {', '.join(map(str, REDIRECT_CODES))}, got {value!r}")
    return value


def _choice(allowed: tuple[str, ...]):
    def convert(value: Any) -> str:
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(map(repr, allowed))}, got {value!r}")
        return value
    return convert


def _string(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


def _strings(value: Any) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ValueError(f"expected a string or a list of strings, got {value!r}")
    return [_string(v) for v in items]


def _header_name(value: Any) -> str:
    name = _string(value)
    if not all(c.isalnum() or c in "-_" for c in name):
        raise ValueError(f"{name!r} is not a header name (letters, digits, '-' and '_')")
    return name


def _path(text: str, base: pathlib.Path) -> str:
    path = pathlib.Path(text).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())
