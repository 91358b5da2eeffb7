"""The native TOML format → Config.

tomllib reads the syntax; this module checks every key against what its table may hold (unknown
keys are errors, never ignored), converts values, applies [defaults], and leaves ranges and
cross-references to validate.py so every format agrees on them. Errors carry "file:line" found
by toml_lines, since tomllib keeps no positions for values.
"""
from __future__ import annotations

import difflib
import itertools
import pathlib
import re
import tomllib
from os import PathLike
from typing import Any, Callable, Iterator, Mapping

from virtserve.engine.config import persistence
from virtserve.engine.config.model import (
    MODES,
    BackendSpec,
    BindSpec,
    Config,
    ConfigError,
    ConfigErrors,
    FrontendSpec,
    RedirectSpec,
    ServerSpec,
    Timeouts,
)
from virtserve.engine.config.native_admin import admin_sections, proxy_stats
from virtserve.engine.config import tls_keys
from virtserve.engine.config import native_checks
from virtserve.engine.config import native_rules
from virtserve.engine.config import native_ipvs
from virtserve.engine.config.toml_lines import TomlLines
from virtserve.engine.config.units import parse_time, split_host_port
from virtserve.engine.config.validate import validate

TOP_KEYS = ("grace", "defaults", "frontend", "backend", "listen", "stats", "log", "workers", "autoreload", "ipvs")
TIMEOUT_KEYS = ("connect", "client", "server", "http-request", "keep-alive", "queue", "handshake")
FRONTEND_KEYS = ("bind", "mode", "backend", "maxconn", "forwardfor", "timeout", "redirect",
                 *native_rules.FRONTEND_RULE_KEYS, *native_ipvs.FRONTEND_KEYS, "stats", "httpclose")
BACKEND_KEYS = ("mode", "scheduler", "scheduler-options", "retries", "forwardfor", "timeout", "servers",
                *native_checks.BACKEND_CHECK_KEYS,
                "cookie", "persistent", "stick", "redispatch", *native_ipvs.BACKEND_KEYS,
                *native_rules.BACKEND_RULE_KEYS, "stats", "httpclose")
LISTEN_KEYS = ("bind", "maxconn", "redirect", *native_rules.FRONTEND_RULE_KEYS, *native_ipvs.FRONTEND_KEYS,
               *BACKEND_KEYS)  # its backend is itself: no `backend` key
DEFAULTS_KEYS = ("mode", "retries", "forwardfor", "maxconn", "timeout", "scheduler", "scheduler-options",
                 "httpclose")
SERVER_KEYS = ("name", "address", "port", "weight", "maxconn", "backup", "ssl", "send-proxy", "check", "cookie",
               *native_ipvs.SERVER_KEYS)

# Words other formats use for our keys: an unknown key among them is pointed at ours.
BIND_KEYS = ("address", "ssl", "accept-proxy")

_OTHER_NAMES = {
    "default-backend": "backend", "use-backend": "backend", "balance": "scheduler",
    "algorithm": "scheduler", "server": "servers", "timeouts": "timeout", "binds": "bind",
    "options": "scheduler-options", "address": "bind", "tls": "ssl", "send-proxy-v2": "send-proxy",
    "proxy-protocol": "accept-proxy", "cert": "crt", "certificate": "crt", "ca": "ca-file",
    "checktype": "check", "healthcheck": "check", "failurecount": "check", "emailalert": "alert",
}

# Model field -> the keys that may set it (in order), where the names differ.
_FIELD_KEYS = {
    "default_backend": ("backend",), "binds": ("bind",),
    "scheduler_options": ("scheduler-options",), "port": ("port", "address"),
}

_WILDCARDS = {"": "0.0.0.0", "*": "0.0.0.0"}  # HAProxy: `bind :80` is every IPv4 address

Key = tuple  # a TomlLines path: keys and array indexes


def load(path: str | PathLike[str]) -> Config:
    path = pathlib.Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read config: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), f"config is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return parse(text, source=str(path))


def parse(text: str, *, source: str = "<string>") -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(exc, text, source) from None
    builder = _Builder(_Doc(text, source))
    config = builder.build(data)
    validate(config, locate=builder.locate)
    native_ipvs.validate(config)
    return config


def parse_dict(data: Mapping[str, Any], *, source: str = "<dict>") -> Config:
    """The same schema given as a Python dict (the embedding API); errors name the key path."""
    builder = _Builder(_Doc("", source))
    config = builder.build(dict(data))
    validate(config, locate=builder.locate)
    native_ipvs.validate(config)
    return config


class _Doc:
    def __init__(self, text: str, source: str) -> None:
        self.lines = TomlLines(text)
        self.source = source

    def at(self, path: Key) -> str:
        line = self.lines.nearest(path)
        if line:
            return f"{self.source}:{line}"
        if path and not self.lines.lines:  # a dict has no lines: name the key path instead
            return self.source + ":" + "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in path)[1:]
        return self.source

    def error(self, path: Key, message: str) -> ConfigError:
        return ConfigError(self.at(path), message)


class _Table:
    """One TOML table checked against the keys it may hold; dashes and underscores alike."""

    def __init__(self, doc: _Doc, path: Key, data: Any, allowed: tuple[str, ...] | None, label: str) -> None:
        self.doc, self.path, self.label = doc, path, label
        if not isinstance(data, dict):
            raise doc.error(path, f"{label} must be a table, got {_show(data)}")
        self.raw: dict[str, tuple[str, Any]] = {}  # canonical key -> (key as written, value)
        errors = []
        for key, value in data.items():
            canon = key.replace("_", "-")
            if allowed is not None and canon not in allowed:
                errors.append(doc.error(path + (key,), f"unknown key {key!r} in {label}{_suggest(canon, allowed)}"))
            elif canon in self.raw:
                errors.append(doc.error(
                    path + (key,), f"{self.raw[canon][0]!r} and {key!r} in {label} are the same key: keep one"
                ))
            else:
                self.raw[canon] = (key, value)
        if errors:  # every unknown key of the table, not only the first
            raise ConfigErrors(errors) if len(errors) > 1 else errors[0]

    def __contains__(self, key: str) -> bool:
        return key in self.raw

    def path_of(self, key: str) -> Key:
        return self.path + (self.raw[key][0],)

    def get(self, key: str, convert: Callable[[Any], Any]) -> Any:
        written, value = self.raw[key]
        try:
            return convert(value)
        except ValueError as exc:
            raise self.doc.error(self.path + (written,), f"{written!r} in {self.label}: {exc}") from None


class _Builder:
    def __init__(self, doc: _Doc) -> None:
        self.doc = doc
        source = pathlib.Path(doc.source)
        # Certificate paths are relative to the config file (to the working directory otherwise).
        self.base = source.parent if source.is_file() else pathlib.Path(".")
        self.defaults: _Table
        self.paths: dict[int, Key] = {}  # id(spec) -> its table, for locate()
        # Errors of the sections read so far: each section stops at its first, the file does
        # not (`virtserve check` lists them all).
        self.errors: list[ConfigError] = []

    def attempt(self, build: Callable[[], Any], default: Any = None) -> Any:
        try:
            return build()
        except _Recorded:
            return default
        except ConfigErrors as exc:
            self.errors.extend(exc.errors)
            return default
        except ConfigError as exc:
            self.errors.append(exc)
            return default

    def build(self, data: dict) -> Config:
        top = _Table(self.doc, (), data, TOP_KEYS, "the top level")
        kwargs: dict[str, Any] = {}
        if "grace" in top:
            self.attempt(lambda: kwargs.update(grace=top.get("grace", _time)))
        self.attempt(lambda: kwargs.update(admin_sections(self, top)))
        if "workers" in top:
            self.attempt(lambda: kwargs.update(workers=top.get("workers", _int)))
        if "autoreload" in top:
            self.attempt(lambda: kwargs.update(autoreload=top.get("autoreload", _bool)))
        self.attempt(lambda: kwargs.update(native_ipvs.top_kwargs(self, top)))
        raw_defaults = top.raw["defaults"][1] if "defaults" in top else {}
        self.defaults = self.attempt(
            lambda: _Table(self.doc, ("defaults",), raw_defaults, DEFAULTS_KEYS, "[defaults]"),
            _Table(self.doc, ("defaults",), {}, DEFAULTS_KEYS, "[defaults]"))
        for key in self.defaults.raw:  # check them even where no section inherits them
            self.attempt(lambda: self.defaults.get(key, _CONVERT.get(key, _table)))
        if "timeout" in self.defaults:
            self.attempt(lambda: self.timeouts_of(self.defaults))

        sections: list[tuple[int, list, list]] = []  # (line, frontends, backends)
        for kind in ("frontend", "backend", "listen"):
            for name, table in self.attempt(lambda: list(self.sections(top, kind)), []):
                if table is None:
                    continue
                fronts = [self.attempt(lambda: self.frontend(name, table))] if kind != "backend" else []
                backs = [self.attempt(lambda: self.backend(name, table))] if kind != "frontend" else []
                sections.append((self.doc.lines.get(table.path) or 0, fronts, backs))
        if self.errors:
            # A listen's keys are read for its frontend and its backend: name each error once.
            unique = {str(e): e for e in self.errors}
            raise ConfigErrors(sorted(unique.values(), key=_line_of))
        sections.sort(key=lambda s: s[0])  # document order, whatever the kind

        config = Config(
            frontends=tuple(f for _, fronts, _ in sections for f in fronts),
            backends=tuple(b for _, _, backs in sections for b in backs),
            source=self.doc.source,
            **kwargs,
        )
        self.paths[id(config)] = ()
        return config

    def sections(self, top: _Table, kind: str) -> Iterator[tuple[str, _Table]]:
        if kind not in top:
            return
        written, named = top.raw[kind]
        if not isinstance(named, dict):
            raise self.doc.error(
                (written,), f"{kind!r} must hold named sections like [{kind}.web], got {_show(named)}"
            )
        allowed = {"frontend": FRONTEND_KEYS, "backend": BACKEND_KEYS, "listen": LISTEN_KEYS}[kind]
        for name, body in named.items():
            label = f"[{kind}.{_key(name)}]"
            if not isinstance(body, dict):
                self.errors.append(self.doc.error(
                    (written, name), f"{label} is not a section: a {kind} needs a name, like [{kind}.web]"
                ))
                continue
            table = self.attempt(lambda: _Table(self.doc, (written, name), body, allowed, label))
            if table is None:  # unknown keys, recorded: read the known ones, to name their errors too
                known = {k: v for k, v in body.items() if k.replace("_", "-") in allowed}
                table = self.attempt(lambda: _Table(self.doc, (written, name), known, allowed, label))
            yield name, table

    def frontend(self, name: str, table: _Table) -> FrontendSpec:
        kwargs: dict[str, Any] = {}
        errors = len(self.errors)
        part = self.part(kwargs)
        part(lambda: {"binds": self.binds(table)})
        part(lambda: {"default_backend": self.default_backend(name, table)})
        part(lambda: {"timeouts": self.timeouts(table)})
        for key in ("mode", "maxconn", "forwardfor", "httpclose"):
            part(lambda: self.inherit(table, (key,)))
        if "redirect" in table:
            part(lambda: {"redirect": self.redirect(table)})
        part(lambda: native_rules.frontend_kwargs(self, table))
        part(lambda: native_ipvs.frontend_kwargs(self, table))
        if "stats" in table and table.path[0] == "frontend":
            part(lambda: {"stats": proxy_stats(self, table)})
        if len(self.errors) > errors:
            raise _Recorded(self.doc.source, "")
        spec = FrontendSpec(name=name, where=self.doc.at(table.path), **kwargs)
        self.paths[id(spec)] = table.path
        return spec

    def default_backend(self, name: str, table: _Table) -> str:
        if "backend" in table:
            return table.get("backend", _str)
        if table.path[0] == "listen":
            return name
        raise self.doc.error(table.path, f'{table.label} has no backend: add backend = "<name>"')

    def backend(self, name: str, table: _Table) -> BackendSpec:
        kwargs: dict[str, Any] = {}
        errors = len(self.errors)
        part = self.part(kwargs)
        for key in ("mode", "scheduler", "retries", "forwardfor", "httpclose"):
            part(lambda: self.inherit(table, (key,)))
        # Options belong to their algorithm: a section that picks its own scheduler starts clean.
        for source in (table, self.defaults):
            if "scheduler-options" in source:
                part(lambda: {"scheduler_options": source.get("scheduler-options", _options)})
                break
            if "scheduler" in source:
                break
        part(lambda: native_checks.backend_kwargs(self, table))
        part(lambda: native_ipvs.backend_kwargs(self, table))
        for key in ("cookie", "persistent", "stick", "redispatch"):
            if key in table:
                part(lambda: {key: table.get(key, _CONVERT[key])})
        if table.path[0] == "backend":  # a listen's rules are its frontend's
            part(lambda: native_rules.backend_kwargs(self, table))
        if "stats" in table and table.path[0] != "frontend":
            part(lambda: {"stats": proxy_stats(self, table)})
        part(lambda: {"servers": self.servers(table)})
        part(lambda: {"timeouts": self.timeouts(table)})
        if len(self.errors) > errors:
            raise _Recorded(self.doc.source, "")
        spec = BackendSpec(name=name, where=self.doc.at(table.path), **kwargs)
        self.paths[id(spec)] = table.path
        return spec

    def part(self, kwargs: dict[str, Any]) -> Callable[[Callable[[], dict[str, Any]]], None]:
        """Reads one key (or group) of a section into kwargs; an error is recorded and the
        section goes on, so that every bad key of it is named."""
        return lambda read: self.attempt(lambda: kwargs.update(read()))

    def inherit(self, table: _Table, keys: tuple[str, ...]) -> dict[str, Any]:
        kwargs = {}
        for key in keys:
            for source in (table, self.defaults):
                if key in source:
                    kwargs[key.replace("-", "_")] = source.get(key, _CONVERT[key])
                    break
        return kwargs

    def timeouts(self, table: _Table) -> Timeouts:
        values = {**self.timeouts_of(self.defaults), **self.timeouts_of(table)}
        return Timeouts(**values)

    def timeouts_of(self, table: _Table) -> dict[str, float]:
        if "timeout" not in table:
            return {}
        sub = _Table(self.doc, table.path_of("timeout"), table.raw["timeout"][1], TIMEOUT_KEYS,
                     f"the timeouts of {table.label}")
        return {key.replace("-", "_"): sub.get(key, _time) for key in sub.raw}

    def binds(self, table: _Table) -> tuple[BindSpec, ...]:
        if "bind" not in table:
            raise self.doc.error(
                table.path, f'{table.label} has no bind: add bind = "127.0.0.1:8080" (port 0 picks a free port)'
            )
        path, value = table.path_of("bind"), table.raw["bind"][1]
        if isinstance(value, (str, dict)):
            items = [(path, value)]
        elif isinstance(value, list):
            items = [(path + (i,), item) for i, item in enumerate(value)]
        else:
            raise self.doc.error(
                path, f"'bind' in {table.label}: expected an address (or a table with address, ssl, "
                f"accept-proxy) or a list of them, got {_show(value)}"
            )
        binds = []
        for where, text in items:
            extra = {}
            if isinstance(text, dict):
                text, extra = self.bind_table(where, text, table.label)
            try:
                host, port = split_host_port(text)
            except ValueError as exc:
                raise self.doc.error(where, f"bind in {table.label}: {exc}") from None
            if port is None:
                raise self.doc.error(
                    where, f"bind {text!r} in {table.label} has no port: write 'host:port' (port 0 picks a free port)"
                )
            binds.append(BindSpec(address=_WILDCARDS.get(host, host), port=port, where=self.doc.at(where),
                                  **extra))
            self.paths[id(binds[-1])] = where
        return tuple(binds)

    def bind_table(self, path: Key, body: dict, section: str) -> tuple[str, dict[str, Any]]:
        """`{ address = "host:port", ssl = { crt = ... }, accept-proxy = true }`"""
        label = f"bind in {section}"
        table = _Table(self.doc, path, body, BIND_KEYS, label)
        if "address" not in table:
            raise self.doc.error(path, f'{label} has no address: add address = "host:port"')
        extra: dict[str, Any] = {}
        if "accept-proxy" in table:
            extra["accept_proxy"] = table.get("accept-proxy", _bool)
        if "ssl" in table:
            sub = _Table(self.doc, table.path_of("ssl"), table.raw["ssl"][1], tls_keys.BIND,
                         f"the ssl settings of {label}")
            extra["ssl"] = tls_keys.bind_spec(sub, self.base, self.doc.at(sub.path))
        return table.get("address", _str), extra

    def redirect(self, table: _Table) -> RedirectSpec:
        value = table.raw["redirect"][1]
        if isinstance(value, str):  # redirect = "https"
            return RedirectSpec(scheme=table.get("redirect", tls_keys.scheme))
        sub = _Table(self.doc, table.path_of("redirect"), value, ("scheme", "code", "port"),
                     f"the redirect of {table.label}")
        kwargs = {"scheme": sub.get("scheme", tls_keys.scheme)} if "scheme" in sub else {}
        if "code" in sub:
            kwargs["code"] = sub.get("code", tls_keys.redirect_code)
        if "port" in sub:
            kwargs["port"] = sub.get("port", _int)
        return RedirectSpec(**kwargs)

    def servers(self, table: _Table) -> tuple[ServerSpec, ...]:
        if "servers" not in table:
            return ()
        path, value = table.path_of("servers"), table.raw["servers"][1]
        if not isinstance(value, list):
            raise self.doc.error(
                path, f"'servers' in {table.label}: expected a list of tables like "
                f'[{{ address = "127.0.0.1:9001" }}], got {_show(value)}'
            )
        servers = tuple(self.attempt(lambda: self.server(i, path + (i,), body, table.label, table))
                        for i, body in enumerate(value))
        if None in servers:
            raise _Recorded(self.doc.source, "")  # the section stops here
        return servers

    def server(self, index: int, path: Key, body: Any, section: str, backend: _Table | None = None) -> ServerSpec:
        named = isinstance(body, dict) and isinstance(body.get("name"), str)
        label = f"server {body['name']!r} in {section}" if named else f"server #{index + 1} in {section}"
        table = _Table(self.doc, path, body, SERVER_KEYS, label)
        if "address" not in table:
            raise self.doc.error(path, f'{label} has no address: add address = "host:port"')
        address = table.raw["address"][1]
        host, port = table.get("address", split_host_port)
        if "port" in table:
            if port is not None:
                raise self.doc.error(
                    table.path_of("port"), f"{label}: port given twice, in address {address!r} and as 'port'"
                )
            port = table.get("port", _int)
        elif port is None:
            raise self.doc.error(
                table.path_of("address"),
                f"{label}: address {address!r} has no port: write 'host:port' or add port = N",
            )
        kwargs = {key: table.get(key, _CONVERT[key]) for key in ("weight", "maxconn", "backup")
                  if key in table}
        if "send-proxy" in table:
            kwargs["send_proxy"] = table.get("send-proxy", tls_keys.proxy_version)
        if "ssl" in table:
            value = table.raw["ssl"][1]
            if value is not False:
                sub = _Table(self.doc, table.path_of("ssl"), {} if value is True else value,
                             tls_keys.SERVER, f"the ssl settings of {label}")
                kwargs["ssl"] = tls_keys.server_spec(sub, self.base, self.doc.at(sub.path))
        kwargs.update(native_checks.server_kwargs(self, table, backend))
        kwargs.update(native_ipvs.server_kwargs(self, table))
        if "cookie" in table:
            kwargs["cookie"] = table.get("cookie", _str)
        spec = ServerSpec(
            name=table.get("name", _str) if "name" in table else f"s{index + 1}",
            address=host,
            port=port,
            where=self.doc.at(path),
            **kwargs,
        )
        self.paths[id(spec)] = path
        return spec

    def locate(self, spec: object, field: str) -> str:
        """validate()'s hook: the line that set `field` of `spec`, in its table or [defaults]."""
        path = self.paths.get(id(spec))
        if path is None:
            return ""
        if field.startswith("timeouts."):
            candidates = [("timeout", field.partition(".")[2])]
        else:
            candidates = [(key,) for key in _FIELD_KEYS.get(field, (field,))]
        inherits = isinstance(spec, (FrontendSpec, BackendSpec))
        for base in (path, ("defaults",)) if inherits else (path,):
            for keys in candidates:
                # The key as written may use dashes or underscores.
                for spelled in itertools.product(*({k.replace("_", "-"), k.replace("-", "_")} for k in keys)):
                    line = self.doc.lines.get(base + spelled)
                    if line:
                        return f"{self.doc.source}:{line}"
        return ""


class _Recorded(ConfigError):
    """A section gives up on an error already in the builder's list."""


def _line_of(error: ConfigError) -> int:
    line = error.where.rpartition(":")[2]
    return int(line) if line.isdigit() else 0


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {_show(value)}")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected a whole number, got {_show(value)}")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {_show(value)}")
    return value


def _mode(value: Any) -> str:
    if value not in MODES:
        raise ValueError(f"expected one of {', '.join(map(repr, MODES))}, got {_show(value)}")
    return value


def _time(value: Any) -> float:
    # A bare TOML number is seconds here; haproxy.cfg's bare numbers are milliseconds.
    return parse_time(value, bare_unit="s")


def _table(value: Any) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"expected a table, got {_show(value)}")
    return value


def _options(value: Any) -> tuple[tuple[str, Any], ...]:
    """Scheduler options as sorted (key, value) pairs, keys with dashes: hashable and comparable."""
    options = {}
    for key, item in _table(value).items():
        canon = key.replace("_", "-")
        if canon in options:
            raise ValueError(f"option {key!r} is given twice (with dashes and with underscores)")
        if isinstance(item, list) and all(isinstance(x, (str, int, float, bool)) for x in item):
            item = tuple(item)
        elif not isinstance(item, (str, int, float, bool)):
            raise ValueError(
                f"option {key!r} must be a string, number, boolean or a list of them, got {_show(item)}"
            )
        options[canon] = item
    return tuple(sorted(options.items()))


_CONVERT: dict[str, Callable[[Any], Any]] = {
    "mode": _mode, "retries": _int, "forwardfor": _bool, "maxconn": _int, "scheduler": _str,
    "scheduler-options": _options, "weight": _int, "backup": _bool,
    "cookie": persistence.cookie, "persistent": persistence.persistent, "stick": persistence.stick,
    "redispatch": _bool, "httpclose": _bool,
}


def _suggest(key: str, allowed: tuple[str, ...]) -> str:
    other = _OTHER_NAMES.get(key)
    if other in allowed:
        return f" — did you mean {other!r}?"
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        return f" — did you mean {close[0]!r}?"
    return f" (allowed: {', '.join(allowed)})"


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else '"' + name.replace('"', '\\"') + '"'


_AT = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_AT_END = "(at end of document)"


def _syntax_error(exc: tomllib.TOMLDecodeError, text: str, source: str) -> ConfigError:
    message = str(exc)
    match = _AT.search(message)
    if match:
        what = message[:match.start()]
        return ConfigError(f"{source}:{match[1]}", f"TOML syntax error: {what} (column {match[2]})")
    if message.endswith(_AT_END):
        line = max(len(text.splitlines()), 1)
        what = message[:-len(_AT_END)].strip()
        return ConfigError(f"{source}:{line}", f"TOML syntax error: {what} at end of file")
    return ConfigError(source, f"TOML syntax error: {message}")
