"""Config: every format parses into the same frozen model (model.py), checked by validate.py.

`load(path)` picks the parser from the file's suffix.
"""
from __future__ import annotations

import pathlib
from os import PathLike

from virtserve.engine.config.model import (
    MODES,
    BackendSpec,
    BindSpec,
    Config,
    ConfigError,
    ConfigErrors,
    FrontendSpec,
    Mode,
    ServerSpec,
    Timeouts,
)
from virtserve.engine.config.native import load as load_native
from virtserve.engine.config.native import parse as parse_native
from virtserve.engine.config.native import parse_dict
from virtserve.engine.config.validate import validate



# The haproxy.cfg and ldirectord.cf parsers are imported when a file of theirs is read: a
# TOML config (or a Config built in code) starts without paying for them.
def load_haproxy(path: str | PathLike[str]) -> Config:
    from virtserve.engine.config.haproxy import load as load_haproxy_cfg

    return load_haproxy_cfg(path)


def load_ldirectord(path: str | PathLike[str]) -> Config:
    from virtserve.engine.config.ldirectord import load as load_ldirectord_cf

    return load_ldirectord_cf(path)


_LOADERS = {".toml": load_native, ".cfg": load_haproxy, ".cf": load_ldirectord}


def load(path: str | PathLike[str]) -> Config:
    """Read and check a config file; ConfigError (with "file:line") when it cannot be served."""
    loader = _LOADERS.get(pathlib.Path(path).suffix.lower()) or _sniff(path)
    if loader is None:
        raise ConfigError(
            str(path),
            f"config format of {str(path)!r} is not supported yet (supported: {', '.join(_LOADERS)})",
        )
    return loader(path)


def _sniff(path: str | PathLike[str]):  # type: ignore[no-untyped-def]
    """The format of a file without a known suffix, from its first directive."""
    try:
        text = pathlib.Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        word = line.split("#", 1)[0].strip()
        if not word:
            continue
        if word.startswith("["):
            return load_native
        if word.split()[0] in ("global", "defaults", "frontend", "backend", "listen"):
            return load_haproxy
        if "=" in word and word.split("=", 1)[0].strip().isalpha():
            key = word.split("=", 1)[0].strip()
            return load_ldirectord if key in ("virtual", "checktimeout", "checkinterval", "autoreload",
                                              "logfile", "quiescent", "negotiatetimeout", "fork",
                                              "emailalert", "failurecount", "callback", "supervised") else load_native
        return None
    return None


__all__ = [
    "MODES", "BackendSpec", "BindSpec", "Config", "ConfigError", "ConfigErrors", "FrontendSpec", "Mode",
    "ServerSpec", "Timeouts", "load", "load_haproxy", "load_ldirectord", "load_native", "parse_dict", "parse_native", "validate",
]
