"""HAProxy `on-marked-down shutdown-sessions`: when a server is marked down, the connections to
it are closed. The engine already tracks every live connection (for timeouts and draining), and
each protocol that talks to a server names it in `.server`, so finding them costs nothing on the
data path: one scan of the live connections, only when a server goes down."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from virtserve.checks.base import Result
    from virtserve.engine.backend import Backend, Server
    from virtserve.engine.state import EngineState

log = logging.getLogger("virtserve.engine")


def connections_to(state: EngineState, server: Server) -> list:
    """The live connections (L4 client sides, L7 server sides, pooled or busy) bound to server."""
    return [conn for conn in state.conns if getattr(conn, "server", None) is server]


class ShutdownSessions:
    def __init__(self, state: EngineState) -> None:
        self.state = state

    def __call__(self, backend: Backend, server: Server, up: bool, result: Result | None) -> None:
        if up or not backend.spec.shutdown_sessions:
            return
        conns = connections_to(self.state, server)
        for conn in conns:
            # Abort: the L4 pair closes both sides; an L7 exchange answers 502 if the client has
            # seen nothing yet, else cuts it off, as HAProxy's killed session does.
            conn.transport.abort()
        if conns:
            log.warning("Server %s/%s: %d session(s) shut down", backend.name, server.name, len(conns))
