"""One inner epoll per engine, watched by the event loop as a single reader.

The raw L4 relay (l4/rawrelay.py) and the plain HTTP binds' client connections (rawio.py)
register their sockets here, edge-triggered, instead of giving each connection uvloop
transports (each costs getsockname, getpeername, TCP_NODELAY, an io_uring submission, Handles,
futures and a WeakValueDictionary entry). The loop calls `_on_ready` once per batch of ready
sockets; it dispatches each event to the handler registered for its fd.

Socket objects closed while a batch runs (`discard`) are closed at its end: a socket closed while
handling one event frees its fd number, and a socket made later in the same batch (accept,
socket) could get that number while the batch still holds events of the closed one. Handlers
that close bare fds themselves (rawio) must take a stale event for a harmless one (a read that
finds nothing). Outside a batch there are no such stale events: closing an fd takes it out of
the epoll, ready or not.
"""
from __future__ import annotations

import asyncio
import select
from typing import Any, Callable

BUFSIZE = 256 * 1024  # one read of a handler: what is read is sent on or copied out at once
MAX_EVENTS = 256  # per batch; more stay ready in the inner epoll and the loop calls again

EDGE = select.EPOLLIN | select.EPOLLOUT | select.EPOLLRDHUP | select.EPOLLET


class Reactor:
    __slots__ = ("loop", "epoll", "fd", "handlers", "busy", "dead", "later", "closed", "buf",
                 "buffers", "view")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.epoll = select.epoll()
        self.fd = self.epoll.fileno()
        self.handlers: dict[int, Callable[[int], None]] = {}  # fd -> handler(events)
        self.busy = False  # within _on_ready: discarded sockets wait for the end of the batch
        self.dead: list[Any] = []  # sockets to close at the end of the batch
        self.later: list[Callable[[], None]] = []  # run once the loop's current callbacks are done
        self.closed = False
        # One read buffer for all the handlers (recv_into, preadv).
        self.buf = bytearray(BUFSIZE)
        self.buffers = [self.buf]
        self.view = memoryview(self.buf)
        loop.add_reader(self.fd, self._on_ready)

    def add(self, fd: int, handler: Callable[[int], None], mask: int = EDGE) -> None:
        self.handlers[fd] = handler
        self.epoll.register(fd, mask)

    def discard(self, sock: Any) -> None:
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
                    except Exception as exc:  # the batch's other (edge-triggered) events must run
                        self.loop.call_exception_handler({"message": "reactor handler failed",
                                                          "exception": exc})
        finally:
            self.busy = False
            dead = self.dead
            if dead:
                for sock in dead:
                    sock.close()
                dead.clear()

    def soon(self, callback: Callable[[], None]) -> None:
        """Call `callback` from the loop after the current callbacks: one loop handle for all
        the callbacks queued in one round."""
        later = self.later
        if not later:
            self.loop.call_soon(self._run_later)
        later.append(callback)

    def _run_later(self) -> None:
        later, self.later = self.later, []
        for callback in later:
            try:
                callback()
            except Exception as exc:  # one broken connection must not stop the others
                self.loop.call_exception_handler({"message": "reactor callback failed",
                                                  "exception": exc})

    def close(self) -> None:
        """Stop watching; what is still registered and can `shut` (rawio's listeners and
        transports) is shut, the rest (the L4 relay's, drained by the engine) forgotten."""
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self.fd)
        for handler in list(self.handlers.values()):
            shut = getattr(getattr(handler, "__self__", None), "shut", None)
            if shut is not None:
                shut()
        self.handlers.clear()
        for sock in self.dead:
            sock.close()
        self.dead.clear()
        self.epoll.close()


def reactor_of(state: Any) -> Reactor:
    """The engine's reactor (EngineState.reactor), made when first needed."""
    reactor = state.reactor
    if reactor is None:
        reactor = state.reactor = Reactor(state.loop)
    return reactor
