"""The one typed config model every front end (TOML, haproxy.cfg, ldirectord.cf) parses into.

Frozen, slotted dataclasses: reload compares two trees and rebuilds only what changed.
Times are float seconds. `where` fields ("file:line") locate a setting for error messages;
they take no part in equality, so the same topology written in two formats compares equal.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Mode = Literal["tcp", "http"]
MODES = ("tcp", "http")


class ConfigError(ValueError):
    """A config that cannot be served. `where` is "file:line" (or just "file")."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where
        self.message = message


class ConfigErrors(ConfigError):
    """Every problem found in one file, each a ConfigError; printed one per line."""

    def __init__(self, errors: list[ConfigError]) -> None:
        first = errors[0]
        super().__init__(first.where, first.message)
        self.errors = list(errors)

    def __str__(self) -> str:
        return "\n".join(ValueError.__str__(e) for e in self.errors)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """HAProxy's timeouts, in seconds. Frontends use client/http_request/keep_alive,
    backends connect/server/queue; both carry the whole set so defaults flow down."""

    connect: float = 5.0
    client: float = 50.0
    server: float = 50.0
    http_request: float = 10.0
    keep_alive: float = 10.0
    queue: float = 5.0


@dataclass(frozen=True, slots=True)
class BindSpec:
    address: str
    port: int  # 0 picks an ephemeral port
    where: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class ServerSpec:
    name: str
    address: str
    port: int
    weight: int = 1
    maxconn: int = 0  # 0: no limit
    backup: bool = False
    where: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class BackendSpec:
    name: str
    mode: Mode = "http"
    scheduler: str = "rr"
    # Algorithm arguments and flags (e.g. sh-port), as sorted (key, value) pairs: hashable.
    scheduler_options: tuple[tuple[str, Any], ...] = ()
    servers: tuple[ServerSpec, ...] = ()
    timeouts: Timeouts = Timeouts()
    retries: int = 3
    forwardfor: bool = False
    where: str = field(default="", compare=False)

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.scheduler_options)


@dataclass(frozen=True, slots=True)
class FrontendSpec:
    name: str
    binds: tuple[BindSpec, ...]
    default_backend: str
    mode: Mode = "http"
    timeouts: Timeouts = Timeouts()
    maxconn: int = 0  # 0: no limit
    forwardfor: bool = False
    where: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class Config:
    frontends: tuple[FrontendSpec, ...] = ()
    backends: tuple[BackendSpec, ...] = ()
    grace: float = 10.0  # seconds in-flight work may take to finish on stop
    source: str = field(default="", compare=False)

    def backend(self, name: str) -> BackendSpec:
        for backend in self.backends:
            if backend.name == name:
                return backend
        raise KeyError(name)

    def summary(self) -> str:
        servers = sum(len(b.servers) for b in self.backends)
        binds = sum(len(f.binds) for f in self.frontends)
        return (
            f"{len(self.frontends)} frontend(s) on {binds} bind(s), "
            f"{len(self.backends)} backend(s), {servers} server(s)"
        )
