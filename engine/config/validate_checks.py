"""Ranges of the health-check settings, on the typed model (every config format ends here)."""
from __future__ import annotations

import math
import re

from virtserve.engine.config.model import ALERT_STATUSES, CHECK_TYPES, BackendSpec, CheckSpec, ConfigError


def check_backend(backend: BackendSpec, at) -> None:
    what = f"backend {backend.name!r}"
    if backend.check is not None:
        check_check(backend.check, f"the check of {what}", at)
    for server in backend.servers:
        if server.check is not None:
            check_check(server.check, f"the check of server {server.name!r} in {what}", at)
    _time(backend, "slowstart", what, at)
    if backend.fallback is not None and not (1 <= backend.fallback.port <= 65535):
        raise ConfigError(at(backend, "fallback"), f"{what}: fallback port {backend.fallback.port} is out of range 1..65535")
    alert = backend.alert
    if alert is not None:
        where = f"the alert of {what}"
        if not alert.to:
            raise ConfigError(at(alert, "to"), f"{where} has no recipient")
        _time(alert, "freq", where, at)
        for status in alert.status:
            if status not in ALERT_STATUSES:
                raise ConfigError(at(alert, "status"), f"{where}: status must be among {', '.join(ALERT_STATUSES)}, got {status!r}")


def check_check(spec: CheckSpec, what: str, at) -> None:
    if spec.type not in CHECK_TYPES:
        raise ConfigError(at(spec, "type"), f"{what}: type must be one of {', '.join(CHECK_TYPES)}, got {spec.type!r}")
    for field in ("interval", "timeout", "negotiate_timeout"):
        _time(spec, field, what, at)
    if spec.interval <= 0:
        raise ConfigError(at(spec, "interval"), f"{what}: interval must be more than 0")
    for field in ("rise", "fall"):
        value = getattr(spec, field)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(at(spec, field), f"{what}: {field} must be a whole number of 1 or more, got {value!r}")
    if isinstance(spec.port, bool) or not isinstance(spec.port, int) or not 0 <= spec.port <= 65535:
        raise ConfigError(at(spec, "port"), f"{what}: port {spec.port!r} is out of range 0..65535")
    for field in ("receive", "expect"):
        try:
            re.compile(getattr(spec, field))
        except re.error as exc:
            raise ConfigError(at(spec, field), f"{what}: bad regular expression in {field}: {exc}") from None
    if spec.type == "external" and not spec.command:
        raise ConfigError(at(spec, "command"), f'{what}: an external check needs command = ["/path/to/check"]')
    if any(not 100 <= code <= 599 for code in spec.status):
        raise ConfigError(at(spec, "status"), f"{what}: status codes must be within 100..599, got {spec.status}")


def _time(spec, field: str, what: str, at) -> None:
    value = getattr(spec, field)
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0):
        raise ConfigError(at(spec, field), f"{what}: {field.replace('_', '-')} must be a time of 0 or more, got {value!r}")
