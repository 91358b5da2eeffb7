"""Helpers for admin-plane tests: a config with stats/log settings around helpers.topology."""
from __future__ import annotations

import dataclasses
from typing import Any

from helpers import topology

from virtserve.engine.config.model import BindSpec, LogSpec, StatsSpec


def admin_topology(ports: list[int], *, stats: dict[str, Any] | None = None,
                   log: dict[str, Any] | None = None, **kw: Any):
    config = topology(ports, **kw)
    extra: dict[str, Any] = {}
    if stats is not None:
        stats = dict(stats)
        if stats.pop("page", True):
            stats.setdefault("bind", BindSpec("127.0.0.1", 0))
        extra["stats"] = StatsSpec(**stats)
    if log is not None:
        extra["log"] = LogSpec(**log)
    return dataclasses.replace(config, **extra)


def stats_url(lb, path: str = "") -> str:
    host, port = lb.engine.admin.stats.address
    return f"http://{host}:{port}{path}"
