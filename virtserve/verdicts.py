"""A server's check state as a worker group sends it: the checker (in the parent) encodes it after
each verdict, every worker applies it through the same `apply_verdict` local checks use, so the
effects (scheduler, quiescent weight, backup and fallback, slow start, shutdown-sessions) are
the same code whether the check ran here or there."""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from virtserve.checks.base import Result
from virtserve.checks.runner import apply_verdict

if TYPE_CHECKING:
    from virtserve.engine.backend import Backend, Server


def encode(backend: Backend, server: Server) -> dict[str, Any]:
    check = server.last_check
    return {"b": backend.name, "s": server.name, "addr": server.address, "port": server.port,
            "healthy": server.healthy, "drained": server.drained, "pct": server.agent_pct,
            "check": dataclasses.asdict(check) if check is not None else None}


def apply(backends: dict[str, Backend], item: dict[str, Any], now: float) -> bool:
    """Put one server's state in force; False when this worker has no such server (yet: a
    reload in flight), which the snapshot after its reload makes up for."""
    backend = backends.get(item["b"])
    server = backend.by_name.get(item["s"]) if backend is not None else None
    if backend is None or server is None or (server.address, server.port) != (item["addr"], item["port"]):
        return False
    check = item["check"]
    apply_verdict(backend, server, item["healthy"], Result(**check) if check is not None else None,
                  item["drained"], item["pct"], now)
    return True
