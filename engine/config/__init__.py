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
from virtserve.engine.config.haproxy import load as load_haproxy
from virtserve.engine.config.native import load as load_native
from virtserve.engine.config.native import parse as parse_native
from virtserve.engine.config.native import parse_dict
from virtserve.engine.config.validate import validate

_LOADERS = {".toml": load_native, ".cfg": load_haproxy}


def load(path: str | PathLike[str]) -> Config:
    """Read and check a config file; ConfigError (with "file:line") when it cannot be served."""
    loader = _LOADERS.get(pathlib.Path(path).suffix.lower())
    if loader is None:
        raise ConfigError(
            str(path),
            f"config format of {str(path)!r} is not supported yet (supported: {', '.join(_LOADERS)})",
        )
    return loader(path)


__all__ = [
    "MODES", "BackendSpec", "BindSpec", "Config", "ConfigError", "ConfigErrors", "FrontendSpec", "Mode",
    "ServerSpec", "Timeouts", "load", "load_haproxy", "load_native", "parse_dict", "parse_native", "validate",
]
