"""The TOML of the kernel IPVS data path → FrontendSpec.forward, IpvsSpec, ServerSpec's IPVS
fields and Config.ipvs.

    [ipvs]                                      # director-wide, optional
    timeout = { tcp = "900s", tcpfin = "120s", udp = "300s" }     # ipvsadm --set
    sync = { state = "master", interface = "eth0", syncid = 1 }   # or a list of them

    [listen.dns]
    bind = "10.0.0.1:53"
    mode = "tcp"
    forward = "auto"                            # userspace (default) | ipvs | auto
    ipvs = { protocol = "udp", one-packet = true }               # or { protocol = "fwm", fwmark = 7 }
    servers = [ { address = "10.0.1.2:53", forward = "gate", u-threshold = 100, l-threshold = 80 } ]

Called by native.py's builder; whether a service can be served by the kernel at all is checked
by engine/ipvs/plan.py (forward = "ipvs" that cannot is an error with its line).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from virtserve.engine.config.model import (
    FORWARD_METHODS,
    FORWARDS,
    IPVS_PROTOCOLS,
    Config,
    ConfigError,
    IpvsGlobalSpec,
    IpvsSpec,
    IpvsSyncSpec,
)

from virtserve.engine.config.tls_keys import _choice

if TYPE_CHECKING:
    from virtserve.engine.config.native import _Builder, _Table

FRONTEND_KEYS = ("forward",)
BACKEND_KEYS = ("ipvs",)
SERVER_KEYS = ("forward", "u-threshold", "l-threshold")
IPVS_KEYS = ("protocol", "fwmark", "one-packet")
TOP_KEYS = ("timeout", "sync")
TIMEOUT_KEYS = ("tcp", "tcpfin", "udp")
SYNC_KEYS = ("state", "interface", "syncid")
MAX_KERNEL_TIMEOUT = 2147483  # seconds: the kernel keeps timeouts in jiffies, in an int (HZ = 1000)


def frontend_kwargs(builder: _Builder, table: _Table) -> dict[str, Any]:
    return {"forward": table.get("forward", _choice(FORWARDS))} if "forward" in table else {}


def backend_kwargs(builder: _Builder, table: _Table) -> dict[str, Any]:
    from virtserve.engine.config.native import _Table, _bool, _int

    if "ipvs" not in table:
        return {}
    sub = _Table(builder.doc, table.path_of("ipvs"), table.raw["ipvs"][1], IPVS_KEYS,
                 f"the ipvs settings of {table.label}")
    kwargs: dict[str, Any] = {}
    if "protocol" in sub:
        kwargs["protocol"] = sub.get("protocol", _choice(IPVS_PROTOCOLS))
    if "fwmark" in sub:
        kwargs["fwmark"] = sub.get("fwmark", _int)
        kwargs.setdefault("protocol", "fwm")
    if "one-packet" in sub:
        kwargs["one_packet"] = sub.get("one-packet", _bool)
    spec = IpvsSpec(where=builder.doc.at(sub.path), **kwargs)
    if spec.protocol == "fwm" and not 0 < spec.fwmark < 2**32:
        raise builder.doc.error(sub.path, f"the ipvs settings of {table.label}: protocol 'fwm' needs fwmark = N (1 or more)")
    if spec.fwmark and spec.protocol != "fwm":
        raise builder.doc.error(sub.path_of("fwmark"), f"fwmark in {table.label} needs protocol = 'fwm'")
    if spec.one_packet and spec.protocol == "tcp":
        raise builder.doc.error(sub.path_of("one-packet"), f"one-packet in {table.label} is for udp services")
    return {"ipvs": spec}


def server_kwargs(builder: _Builder, table: _Table) -> dict[str, Any]:
    from virtserve.engine.config.native import _int

    kwargs: dict[str, Any] = {}
    if "forward" in table:
        kwargs["forward"] = table.get("forward", _choice(FORWARD_METHODS))
    for key in ("u-threshold", "l-threshold"):
        if key in table:
            value = table.get(key, _int)
            if value < 0:
                raise builder.doc.error(table.path_of(key), f"{key} in {table.label} must be 0 or more")
            kwargs[key.replace("-", "_")] = value
    if kwargs.get("l_threshold", 0) > kwargs.get("u_threshold", 0) > 0:
        raise builder.doc.error(table.path_of("l-threshold"),
                                f"l-threshold in {table.label} must be below u-threshold")
    return kwargs


def top_kwargs(builder: _Builder, top: _Table) -> dict[str, Any]:
    from virtserve.engine.config.native import _Table, _int, _str, _time

    if "ipvs" not in top:
        return {}
    table = _Table(builder.doc, top.path_of("ipvs"), top.raw["ipvs"][1], TOP_KEYS, "[ipvs]")
    kwargs: dict[str, Any] = {}
    if "timeout" in table:
        sub = _Table(builder.doc, table.path_of("timeout"), table.raw["timeout"][1], TIMEOUT_KEYS,
                     "the timeouts of [ipvs]")
        for key in sub.raw:
            value = kwargs[key] = sub.get(key, _time)
            if value != int(value) or not 1 <= value <= MAX_KERNEL_TIMEOUT:
                raise builder.doc.error(sub.path_of(key), f"the {key} timeout of [ipvs] must be whole seconds from "
                                                          f"1s to {MAX_KERNEL_TIMEOUT}s (the kernel counts seconds)")
    if "sync" in table:
        path, value = table.path_of("sync"), table.raw["sync"][1]
        items = [(path, value)] if isinstance(value, dict) else \
            [(path + (i,), v) for i, v in enumerate(value)] if isinstance(value, list) else None
        if items is None:
            raise builder.doc.error(path, "sync in [ipvs]: expected a table like "
                                          '{ state = "master", interface = "eth0", syncid = 1 } or a list of them')
        syncs = []
        for where, body in items:
            sub = _Table(builder.doc, where, body, SYNC_KEYS, "a sync daemon of [ipvs]")
            for key in ("state", "interface"):
                if key not in sub:
                    raise builder.doc.error(where, f"a sync daemon of [ipvs] needs {key} = ...")
            spec = IpvsSyncSpec(state=sub.get("state", _choice(("master", "backup"))),
                                interface=sub.get("interface", _str),
                                syncid=sub.get("syncid", _int) if "syncid" in sub else 0,
                                where=builder.doc.at(where))
            if not 0 < len(spec.interface) < 16:  # IFNAMSIZ
                raise builder.doc.error(sub.path_of("interface"), f"a sync daemon of [ipvs]: interface "
                                                                  f"{spec.interface!r} is not an interface name")
            if not 0 <= spec.syncid <= 255:  # one byte in the sync messages (ipvsadm --syncid)
                raise builder.doc.error(sub.path_of("syncid"), "a sync daemon of [ipvs]: syncid must be 0 to 255")
            syncs.append(spec)
        if len({s.state for s in syncs}) != len(syncs):
            raise builder.doc.error(path, "sync in [ipvs]: at most one master and one backup daemon")
        kwargs["sync"] = tuple(syncs)
    return {"ipvs": IpvsGlobalSpec(where=builder.doc.at(table.path), **kwargs)}


def validate(config: Config) -> None:
    """forward = "ipvs" must be servable by the kernel: say which setting stands in the way."""
    for frontend in config.frontends:
        if frontend.forward != "ipvs":
            continue
        from virtserve.engine.ipvs.plan import kernel_obstacles  # only configs that use IPVS pay for it

        obstacles = kernel_obstacles(frontend, config.backend(frontend.default_backend))
        if obstacles:
            raise ConfigError(frontend.where, f"frontend {frontend.name}: forward = 'ipvs' cannot serve it: "
                              + "; ".join(obstacles) + " (forward = 'auto' falls back to the userspace relay)")
