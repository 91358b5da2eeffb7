"""The one scheduler interface, and the registry that maps the names users know to classes.

The shape of HAProxy's lb_ops and the kernel's ip_vs_scheduler: state changes arrive as events
(take/drop/up/down/weight) so each algorithm keeps a structure that is cheap to update, and a pick
is O(1) or O(log n). Sans-IO: nothing here touches a socket or an event loop.
"""
from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

if TYPE_CHECKING:
    from virtserve.engine.backend import Server


class Needs(enum.Flag):
    """What pick() reads from the PickContext."""

    NOTHING = 0
    ADDRESS = enum.auto()  # client address/port
    HTTP = enum.auto()  # the request (method, path, headers)
    DEST = enum.auto()  # the local address the client connected to (IPVS dh, lblc, lblcr)
    PAYLOAD = enum.auto()  # L4: the client's first bytes (rdp-cookie), held before the pick


class PickContext:
    """What a connection or request offers a scheduler to decide on."""

    __slots__ = ("client_ip", "client_port", "request", "dest_ip", "payload", "persist")

    def __init__(self, client_ip: str = "", client_port: int = 0, request: Any = None,
                 dest_ip: str = "", payload: bytes = b"") -> None:
        self.client_ip = client_ip
        self.client_port = client_port
        self.request = request  # L7: the Exchange (its `head` holds method, URI and headers)
        self.dest_ip = dest_ip  # filled only when the scheduler needs DEST
        self.payload = payload  # filled only when the scheduler needs PAYLOAD
        self.persist: Any = None  # the persistence record behind the last pick (persist.py)


class Scheduler:
    """Base class: the default hooks do nothing, so an algorithm overrides what it tracks.

    `servers` is the scheduler's list in its order (config order); the Server objects are shared
    with the Backend, which updates `up`, `weight` and `active` before calling the hooks.
    """

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    needs: ClassVar[Needs] = Needs.NOTHING
    # False where the algorithm's own rule may refuse while a server is available (ovf's
    # active <= weight, static-rr's fixed map): the conformance test then does not insist.
    work_conserving: ClassVar[bool] = True

    def __init__(self, servers: Sequence[Server], options: Mapping[str, Any] | None = None) -> None:
        self.servers = list(servers)
        self.options = dict(options or {})

    def pick(self, ctx: PickContext, avoid: Server | None = None) -> Server | None:
        """The server for this connection or request, or None when none is available.
        `avoid` (a server that just failed) is skipped when another is available."""
        raise NotImplementedError

    def take(self, s: Server) -> None:
        """A connection or request was assigned to s (s.active already counts it)."""

    def drop(self, s: Server) -> None:
        """A connection or request on s ended (s.active already discounts it)."""

    def up(self, s: Server) -> None:
        """s became available."""

    def down(self, s: Server) -> None:
        """s became unavailable."""

    def weight(self, s: Server) -> None:
        """s's effective weight changed."""

    def add(self, s: Server) -> None:
        """s joined at runtime (appended, as HAProxy's dynamic servers). By default the
        structures are built again over the new list, in place: an operator's action, not a
        per-pick cost. Algorithms that can do better override it."""
        self.servers.append(s)
        self._reinit()

    def remove(self, s: Server) -> None:
        """s left at runtime (drained first: nothing in flight on it)."""
        self.servers.remove(s)
        self._reinit()

    def _reinit(self) -> None:
        type(self).__init__(self, self.servers, self.options)


_REGISTRY: dict[str, type[Scheduler]] = {}


def register(cls: type[Scheduler]) -> type[Scheduler]:
    """Class decorator: make a scheduler available under its name and aliases."""
    for key in (cls.name, *cls.aliases):
        if key in _REGISTRY and _REGISTRY[key] is not cls:
            raise ValueError(f"scheduler name {key!r} registered twice")
        _REGISTRY[key] = cls
    return cls


def names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def lookup(name: str) -> type[Scheduler]:
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown scheduler {name!r} (known: {', '.join(sorted(_REGISTRY))})") from None


def create(name: str, servers: Sequence[Server], options: Mapping[str, Any] | None = None) -> Scheduler:
    return lookup(name)(servers, options)


def _load_builtin() -> None:
    # Importing the package imports every built-in algorithm module, which registers itself.
    import virtserve.schedulers  # noqa: F401
