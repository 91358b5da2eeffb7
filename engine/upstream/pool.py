"""Idle keep-alive connections to each real server, reused last-in first-out.

LIFO keeps the hottest connections busy and lets the cold ones reach their idle timeout, so the
pool shrinks by itself after a burst. One list per server; no timer per connection: an idle
connection's `deadline` is swept by the engine's clock."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from virtserve.engine.backend import Server
    from virtserve.engine.state import EngineState

MAX_IDLE_PER_SERVER = 128


class UpstreamPool:
    def __init__(self, state: EngineState, idle_timeout: float) -> None:
        self.state = state
        self.idle_timeout = idle_timeout
        self.idle: dict[Any, list[Any]] = {}  # key -> parked connections, the last parked last

    def acquire(self, key: Any) -> Any | None:
        """An idle open connection to a server, or None. The key is the Server, or for a server
        sent a PROXY header (server, client ip, client port): such a connection is the client's."""
        idle = self.idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn.transport.is_closing():
                return conn
        return None

    def release(self, conn: Any) -> None:
        """Park a connection whose last exchange ended cleanly; close it when the pool is full."""
        idle = self.idle.get(conn.key)
        if idle is None:  # not setdefault: its default list would be built on every call
            idle = self.idle[conn.key] = []
        if self.state.draining or len(idle) >= MAX_IDLE_PER_SERVER:
            conn.transport.close()
            return
        conn.deadline = self.state.now + self.idle_timeout
        idle.append(conn)

    def forget(self, conn: Any) -> None:
        """A parked connection closed (the server timed it out, or we did)."""
        idle = self.idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)

    def idle_count(self, server: Server | None = None) -> int:
        if server is not None:
            return sum(len(v) for k, v in self.idle.items() if k is server or (type(k) is tuple and k[0] is server))
        return sum(len(v) for v in self.idle.values())

    def close(self) -> None:
        for idle in self.idle.values():
            for conn in idle:
                conn.transport.close()
            idle.clear()
