"""A client of the kernel's IPVS table over generic netlink: what ipvsadm does, as methods.

Blocking calls that return at once (see netlink.py), usable from the event loop and the CLI alike.
Kernel errors raise KernelError (an OSError that is also pyroute2's NetlinkError) with the
kernel's errno (EEXIST, ESRCH, ENOENT...).
"""
from __future__ import annotations

import errno
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from virtserve.engine.ipvs import messages as m
from virtserve.engine.ipvs.netlink import GenlChannel
from virtserve.engine.ipvs.table import Destination, KernelTimeouts, SyncDaemon, VirtualService

__all__ = ["IpvsClient", "IpvsUnavailable", "NetlinkError"]


class IpvsUnavailable(OSError):
    """No IPVS here: the module is not loaded, or no permission to use it."""


class IpvsClient:
    def __init__(self) -> None:
        self._chan: GenlChannel | None = None

    def open(self) -> IpvsClient:
        try:
            self._chan = GenlChannel(m.GENL_NAME)
        except NetlinkError as exc:
            if exc.code == errno.ENOENT:
                raise IpvsUnavailable(exc.code, "the kernel has no IPVS (modprobe ip_vs)") from None
            raise IpvsUnavailable(exc.code, f"IPVS over netlink: {exc}") from None
        except OSError as exc:
            raise IpvsUnavailable(exc.errno or 0, f"IPVS over netlink: {exc.strerror or exc}") from None
        try:
            self.info()  # GET_INFO needs CAP_NET_ADMIN, as every IPVS command does
        except NetlinkError as exc:
            self.close()
            raise IpvsUnavailable(exc.code, f"IPVS: {exc} (needs CAP_NET_ADMIN)") from None
        return self

    def close(self) -> None:
        if self._chan is not None:
            self._chan.close()
            self._chan = None

    def __enter__(self) -> IpvsClient:
        return self.open()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _call(self, msg: Any, *, dump: bool = False, reply_class: type = m.ipvs_msg) -> list[Any]:
        if self._chan is None:
            raise RuntimeError("IpvsClient is not open")
        return self._chan.request(msg, self._chan.family_id, reply_class, dump=dump)

    # --- services -----------------------------------------------------------------------------

    def services(self) -> list[VirtualService]:
        return [m.parse_service(r) for r in self._call(m.request(m.CMD_GET_SERVICE), dump=True)]

    def add_service(self, svc: VirtualService) -> None:
        self._call(m.service_request(m.CMD_NEW_SERVICE, svc))

    def set_service(self, svc: VirtualService) -> None:
        self._call(m.service_request(m.CMD_SET_SERVICE, svc))

    def del_service(self, svc: VirtualService) -> None:
        self._call(m.service_request(m.CMD_DEL_SERVICE, svc))

    # --- destinations -------------------------------------------------------------------------

    def destinations(self, svc: VirtualService) -> list[Destination]:
        return [m.parse_dest(r, svc.af) for r in self._call(m.dest_request(m.CMD_GET_DEST, svc), dump=True)]

    def add_dest(self, svc: VirtualService, dest: Destination) -> None:
        self._call(m.dest_request(m.CMD_NEW_DEST, svc, dest))

    def set_dest(self, svc: VirtualService, dest: Destination) -> None:
        self._call(m.dest_request(m.CMD_SET_DEST, svc, dest))

    def del_dest(self, svc: VirtualService, dest: Destination) -> None:
        self._call(m.dest_request(m.CMD_DEL_DEST, svc, dest))

    def table(self) -> list[tuple[VirtualService, list[Destination]]]:
        """Every service with its destinations, counters and rates."""
        return [(svc, self.destinations(svc)) for svc in self.services()]

    # --- the rest of ipvsadm ------------------------------------------------------------------

    def flush(self) -> None:
        """Remove every service (ipvsadm -C)."""
        self._call(m.request(m.CMD_FLUSH))

    def zero(self, svc: VirtualService | None = None) -> None:
        """Zero the counters of one service, or of all (ipvsadm -Z)."""
        self._call(m.request(m.CMD_ZERO) if svc is None else m.service_request(m.CMD_ZERO, svc))

    def info(self) -> tuple[int, int]:
        """(version, connection table size)."""
        replies = self._call(m.request(m.CMD_GET_INFO, cls=m.ipvs_info_msg), reply_class=m.ipvs_info_msg)
        return m.parse_info(replies[0])

    def timeouts(self) -> KernelTimeouts:
        return m.parse_timeouts(self._call(m.request(m.CMD_GET_CONFIG))[0])

    def set_timeouts(self, timeouts: KernelTimeouts) -> None:
        self._call(m.timeouts_request(timeouts))

    def daemons(self) -> list[SyncDaemon]:
        replies = self._call(m.request(m.CMD_GET_DAEMON), dump=True)
        return [d for d in map(m.parse_daemon, replies) if d is not None]

    def start_daemon(self, daemon: SyncDaemon) -> None:
        self._call(m.daemon_request(m.CMD_NEW_DAEMON, daemon))

    def stop_daemon(self, daemon: SyncDaemon) -> None:
        self._call(m.daemon_request(m.CMD_DEL_DAEMON, daemon))
