"""One inner epoll per engine, watched by the event loop as a single reader.

The raw L4 relay (rawrelay.py) registers its sockets here, edge-triggered, instead of giving
each connection two uvloop transports (each costs getsockname, getpeername, TCP_NODELAY, an
io_uring submission, Handles, futures and a WeakValueDictionary entry). The loop calls
`_on_ready` once per batch of ready sockets; it dispatches each event to the handler
registered for its fd.

Closes are deferred to the end of a batch: a socket closed while handling one event frees its
fd number, and a socket made later in the same batch (accept, socket) could get that number
while the batch still holds events of the closed one. Outside a batch (the deadline sweeper,
the admin) there are no such stale events: closing an fd takes it out of the epoll, ready or
not.
"""
from __future__ import annotations

import asyncio
import logging
import select
from typing import Any, Callable

log = logging.getLogger("virtserve.engine")

BUFSIZE = 256 * 1024  # one read of a handler
MAX_EVENTS = 256  # per batch; more stay ready in the inner epoll and the loop calls again

EDGE = select.EPOLLIN | select.EPOLLOUT | select.EPOLLRDHUP | select.EPOLLET


class Reactor:
    __slots__ = ("loop", "epoll", "handlers", "busy", "dead", "buf", "view")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.epoll = select.epoll()
        self.handlers: dict[int, Callable[[int], None]] = {}
        self.busy = False  # within _on_ready: closes wait for the end of the batch
        self.dead: list[Any] = []  # sockets to close at the end of the batch
        self.buf = bytearray(BUFSIZE)  # the handlers' read buffer: each read is sent on at once
        self.view = memoryview(self.buf)
        loop.add_reader(self.epoll.fileno(), self._on_ready)

    def add(self, fd: int, handler: Callable[[int], None], mask: int = EDGE) -> None:
        self.handlers[fd] = handler
        self.epoll.register(fd, mask)

    def close(self, sock: Any) -> None:
        """Stop dispatching to sock's fd and close it (at the end of the batch, if in one)."""
        self.handlers.pop(sock.fileno(), None)
        if self.busy:
            self.dead.append(sock)
        else:
            sock.close()

    def _on_ready(self) -> None:
        handlers = self.handlers
        self.busy = True
        try:
            for fd, events in self.epoll.poll(0, MAX_EVENTS):
                handler = handlers.get(fd)
                if handler is not None:
                    try:
                        handler(events)
                    except Exception:  # one broken connection must not stop the others
                        log.exception("raw relay: handler for fd %d failed", fd)
        finally:
            self.busy = False
            dead = self.dead
            if dead:
                for sock in dead:
                    sock.close()
                dead.clear()

    def stop(self) -> None:
        self.loop.remove_reader(self.epoll.fileno())
        self.epoll.close()
        for sock in self.dead:
            sock.close()
        self.dead.clear()
        self.handlers.clear()
