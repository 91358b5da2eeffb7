"""Client connections of plain HTTP binds without the event loop's transports.

uvloop gives every accepted connection a libuv handle: getsockname + getpeername whatever the
protocol asks, an io_uring/epoll registration and an epoll_ctl DEL before close, and a Python
`WeakValueDictionary` entry (pure-Python frames per connection). For a connection per request
that was 12 syscalls and ~1/3 of the proxy's user time. Here they live on the engine's `Reactor`
(engine/reactor.py: one inner edge-triggered epoll, one `add_reader` in the loop). Its
listeners accept in a bounded loop (the peer address comes with accept), read the request at
once (speculatively, as HAProxy does: wrk and browsers send it with the handshake), and
register a connection only when it has to wait; closing the fd removes it from the epoll.

`RawTransport` is the subset of asyncio.Transport the proxy's protocols use, with asyncio's
semantics: write sends at once and keeps the rest (pause_writing / resume_writing at the
water marks), close waits for the buffer to drain, eof_received returning falsy closes,
connection_lost comes once, after close, from the loop (never inside the caller's call).
"""
from __future__ import annotations

import asyncio
import errno
import logging
import os
import select
import socket
from typing import Any, Callable

from virtserve.engine.reactor import BUFSIZE, Reactor

log = logging.getLogger("virtserve.engine")

_IN = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLET
_OUT = _IN | select.EPOLLOUT
_ERR = select.EPOLLERR | select.EPOLLHUP
_READ_EVENTS = select.EPOLLIN | select.EPOLLRDHUP | _ERR
_WRITE_EVENTS = select.EPOLLOUT | _ERR
_READ_ONLY = select.EPOLLIN
# Reads and writes on the blocking fd that never block (sock_read_iter/sock_write_iter turn
# RWF_NOWAIT into MSG_DONTWAIT); Python ignores SIGPIPE, so a reset peer is an EPIPE error.
_NOWAIT = os.RWF_NOWAIT
_preadv = os.preadv
_pwritev = os.pwritev
_NODELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

MAX_ACCEPTS = 64  # connections accepted per listener readiness: the rest waits a round
MAX_READS = 4  # full reads of one connection in a row before others get their turn
ACCEPT_RETRY = 1.0  # seconds without accepting after EMFILE/ENFILE (asyncio's delay)

_ACCEPT_AGAIN = (BlockingIOError, InterruptedError, ConnectionAbortedError)
_OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def serve(reactor: Reactor, factory: Callable[[], asyncio.BaseProtocol], sock: socket.socket,
          backlog: int = 1024) -> RawServer:
    """Listen on a bound socket; each connection gets factory()'s protocol."""
    return RawServer(reactor, factory, sock, backlog)


class RawServer:
    """A listening socket in the reactor; quacks like the asyncio.Server the engine keeps."""

    def __init__(self, reactor: Reactor, factory: Callable[[], asyncio.BaseProtocol],
                 sock: socket.socket, backlog: int) -> None:
        self.reactor = reactor
        self.factory = factory
        self.sock = sock
        sock.setblocking(False)
        sock.setsockopt(*_NODELAY)  # accepted sockets inherit it: no setsockopt per connection
        sock.listen(backlog)
        self.fd = sock.fileno()
        self.family = sock.family
        self.serving = True
        self._retry: asyncio.TimerHandle | None = None
        reactor.handlers[self.fd] = self.ready
        # Level-triggered: what a bounded accept round leaves is reported again.
        reactor.epoll.register(self.fd, select.EPOLLIN)

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return (self.sock,) if self.serving else ()

    def is_serving(self) -> bool:
        return self.serving

    def ready(self, events: int) -> None:
        accept = self.sock._accept  # type: ignore[attr-defined]  # (fd, address): no socket object made
        reactor, factory, family = self.reactor, self.factory, self.family
        for _ in range(MAX_ACCEPTS):
            try:
                fd, peer = accept()
            except _ACCEPT_AGAIN:
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_FDS:  # let connections end before accepting again
                    log.error("accept on %s failed: %s; pausing accepts for %.0f s",
                              self.sock.getsockname(), exc.strerror, ACCEPT_RETRY)
                    self._pause()
                    return
                raise
            # The fd stays blocking and has no socket object (whose constructor checks the fd
            # with a getsockname): reads and writes say RWF_NOWAIT, so no fcntl per connection.
            # TCP_NODELAY comes from the listening socket.
            try:
                RawTransport(reactor, fd, family, peer, factory())
            except Exception as exc:  # a protocol that fails to start loses its connection only
                os.close(fd)
                reactor.loop.call_exception_handler({"message": "raw connection setup failed",
                                                     "exception": exc})

    def _pause(self) -> None:
        reactor = self.reactor
        reactor.epoll.unregister(self.fd)
        self._retry = reactor.loop.call_later(ACCEPT_RETRY, self._resume)

    def _resume(self) -> None:
        self._retry = None
        if self.serving and not self.reactor.closed:
            self.reactor.epoll.register(self.fd, select.EPOLLIN)

    def close(self) -> None:
        """Stop accepting: the socket closes (and leaves the epoll); connections stay."""
        if not self.serving:
            return
        self.serving = False
        if self._retry is not None:
            self._retry.cancel()
        _forget(self.reactor.handlers, self)
        self.sock.close()

    shut = close

    async def wait_closed(self) -> None:
        return None

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self.reactor.loop


def _forget(handlers: dict[int, Callable[[int], None]], owner: Any) -> None:
    """Drop owner's entry, unless its fd number already serves a newer connection."""
    ready = handlers.get(owner.fd)
    if ready is not None and ready.__self__ is owner:  # type: ignore[attr-defined]
        del handlers[owner.fd]


class RawTransport(asyncio.Transport):
    __slots__ = ("reactor", "fd", "family", "sock", "peer", "protocol", "buffer", "buffered", "registered",
                 "closing", "gone", "reading", "readable", "eof_out", "eof_in", "blocked",
                 "high", "low", "error", "deferred")

    def __init__(self, reactor: Reactor, fd: int, family: int, peer: Any,
                 protocol: asyncio.BaseProtocol) -> None:
        self.reactor = reactor
        self.fd = fd
        self.family = family
        self.sock: socket.socket | None = None  # made when asked for (it then owns the fd)
        self.peer = peer
        self.protocol: Any = protocol
        self.buffer: list[bytes] = []  # what the kernel did not take yet
        self.buffered = 0
        self.registered = 0  # the events asked of the epoll; 0: not in it
        self.closing = False
        self.gone = False  # the fd is closed; connection_lost is called or queued
        self.reading = True  # not paused
        self.readable = True  # data may wait in the socket (edge-triggered: we must remember)
        self.eof_out = False  # write_eof asked
        self.eof_in = False  # the peer's end of stream was read
        self.blocked = False  # the protocol was told pause_writing
        self.high = 65536
        self.low = 16384
        self.error: Exception | None = None
        protocol.connection_made(self)
        # A protocol with `reads_done` may tell, after the first read, that it needs nothing
        # more from the client until it answers (a whole request): the connection is then
        # polled only from its first write on, and one closed after a single answer never is
        # (HAProxy's way: a client's close while its request is served is seen at the answer).
        reads_done = getattr(protocol, "reads_done", None)
        self.deferred = reads_done is not None  # becomes False when a write must poll reads
        if self.reading and not self.closing:
            try:
                self._read()  # speculative: the request usually came with the handshake
            except Exception as exc:
                self._fatal(exc)
        if not self.gone and not self.registered and not (self.deferred and reads_done()):  # type: ignore[misc]
            self.deferred = False
            self._register(_IN)

    # --- events ---------------------------------------------------------------------------------

    def _register(self, mask: int) -> None:
        reactor = self.reactor
        if self.registered:
            reactor.epoll.modify(self.fd, mask)
        else:
            reactor.epoll.register(self.fd, mask)
            reactor.handlers[self.fd] = self.ready
        self.registered = mask

    def _poll_reads(self) -> None:
        if not self.gone and not self.registered:
            self._register(_IN)

    def ready(self, events: int) -> None:
        if events == _READ_ONLY and self.reading and not self.closing:
            # The usual event of a kept-alive connection: its next request, read in one go.
            reactor = self.reactor
            try:
                n = _preadv(self.fd, reactor.buffers, -1, _NOWAIT)
                if 0 < n < BUFSIZE:
                    self.protocol.data_received(reactor.view[:n].tobytes())
                    return
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._lost(exc)
                return
            except Exception as exc:
                self._fatal(exc)
                return
            if n:  # a full read: more may wait
                try:
                    self.protocol.data_received(reactor.view[:n].tobytes())
                except Exception as exc:
                    self._fatal(exc)
                    return
            events = select.EPOLLIN  # the end of stream, or the rest: the general path
        try:
            if events & _WRITE_EVENTS and self.buffer:
                self._flush()
            if events & _READ_EVENTS and not self.gone:
                self.readable = True
                if self.reading and not self.closing:
                    self._read()
        except Exception as exc:
            self._fatal(exc)

    def _read(self) -> None:
        reactor = self.reactor
        fd, buffers, view = self.fd, reactor.buffers, reactor.view
        for _ in range(MAX_READS):
            try:
                n = _preadv(fd, buffers, -1, _NOWAIT)
            except (BlockingIOError, InterruptedError):
                self.readable = False
                return
            except OSError as exc:
                self._lost(exc)
                return
            if not n:
                self.readable = False
                self.eof_in = True
                self.reading = False
                if not self.protocol.eof_received():
                    self.close()
                return
            self.protocol.data_received(view[:n].tobytes())
            if n < BUFSIZE:
                # A short read took all there was; new data triggers the edge again.
                self.readable = False
                return
            if not self.reading or self.closing:
                return
        reactor.soon(self._read_more)  # a fast sender: let the others have their turn

    def _read_more(self) -> None:
        if self.readable and self.reading and not self.closing and not self.gone:
            try:
                self._read()
            except Exception as exc:
                self._fatal(exc)

    def _fatal(self, exc: BaseException) -> None:
        self.reactor.loop.call_exception_handler({
            "message": "Fatal error: protocol callback failed", "exception": exc,
            "transport": self, "protocol": self.protocol})
        self._lost(exc if isinstance(exc, Exception) else None)

    # --- writing --------------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.gone or not data:
            return
        if self.eof_out:
            raise RuntimeError("Cannot call write() after write_eof()")
        if not self.buffer:
            try:
                sent = _pwritev(self.fd, [data], -1, _NOWAIT)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._lost(exc)
                return
            if sent == len(data):
                if self.deferred:
                    self.deferred = False
                    self.reactor.soon(self._poll_reads)  # unless closed meanwhile
                return
            data = data[sent:]
            self._register(_OUT)
        self.buffer.append(bytes(data))
        self.buffered += len(data)
        if self.buffered > self.high and not self.blocked:
            self.blocked = True
            self.protocol.pause_writing()

    def _flush(self) -> None:
        buffer = self.buffer
        data = buffer[0] if len(buffer) == 1 else b"".join(buffer)
        try:
            sent = _pwritev(self.fd, [data], -1, _NOWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lost(exc)
            return
        self.buffered -= sent
        if sent < len(data):
            buffer[:] = [data[sent:]]
        else:
            buffer.clear()
            if not self.closing:
                self._register(_IN)  # writable again is no news until the next blocked write
        if self.blocked and self.buffered <= self.low:
            self.blocked = False
            self.protocol.resume_writing()
        if not buffer:
            if self.closing:
                self._shut(None)
            elif self.eof_out:
                self._shutdown_write()

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self.eof_out or self.closing or self.gone:
            return
        self.eof_out = True
        if not self.buffer:
            self._shutdown_write()

    def _shutdown_write(self) -> None:
        try:
            self._socket().shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self.low, self.high

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = 65536 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self.high, self.low = high, low
        if self.buffered > high and not self.blocked:
            self.blocked = True
            self.protocol.pause_writing()
        elif self.blocked and self.buffered <= low:
            self.blocked = False
            self.protocol.resume_writing()

    # --- reading --------------------------------------------------------------------------------

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        if self.reading or self.closing or self.gone or self.eof_in:
            return
        self.reading = True
        if self.readable:  # the edge came while paused: read from the loop, not from here
            self.reactor.soon(self._read_more)

    def is_reading(self) -> bool:
        return self.reading and not self.closing and not self.gone

    # --- closing --------------------------------------------------------------------------------

    def is_closing(self) -> bool:
        return self.closing or self.gone

    def close(self) -> None:
        """Close once what is buffered is sent; connection_lost(None) follows from the loop."""
        if self.closing or self.gone:
            return
        self.closing = True
        if not self.buffer:
            self._shut(None)

    def abort(self) -> None:
        """Close now, dropping what is buffered."""
        if not self.gone:
            self.closing = True
            self._shut(None)

    def _lost(self, exc: Exception | None) -> None:
        """The connection failed (reset, broken pipe): closed now, the error to connection_lost."""
        if not self.gone:
            self.closing = True
            self._shut(exc)

    def _shut(self, exc: Exception | None) -> None:
        self.gone = True
        self.buffer.clear()
        self.buffered = 0
        if self.registered:
            self.registered = 0
            _forget(self.reactor.handlers, self)
        # Closing leaves the epoll by itself: no EPOLL_CTL_DEL.
        if self.sock is not None:
            self.sock.close()
        else:
            os.close(self.fd)
        self.error = exc
        self.reactor.soon(self._call_lost)

    def _call_lost(self) -> None:
        protocol, self.protocol = self.protocol, None  # no cycle left behind
        protocol.connection_lost(self.error)

    def shut(self) -> None:
        """The reactor closes: like abort, connection_lost still comes (if the loop runs)."""
        self.abort()

    # --- the rest of the Transport interface ----------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self.peer
        if name == "sockname":
            try:
                return self._socket().getsockname()
            except OSError:
                return default
        if name == "socket":
            return None if self.gone else self._socket()
        return default

    def _socket(self) -> socket.socket:
        """A socket object for the fd (it owns the fd from then on: closing closes it)."""
        sock = self.sock
        if sock is None:
            sock = self.sock = socket.socket(self.family, socket.SOCK_STREAM, 0, self.fd)
        return sock

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.protocol

    def __repr__(self) -> str:
        state = "closed" if self.gone else "closing" if self.closing else "open"
        return f"<RawTransport fd={self.fd} {state} peer={self.peer!r}>"


def _nowait_on_sockets() -> bool:
    """Whether this kernel takes RWF_NOWAIT on sockets (older ones say EOPNOTSUPP)."""
    a, b = socket.socketpair()
    try:
        _pwritev(a.fileno(), [b"x"], -1, _NOWAIT)
        return _preadv(b.fileno(), [bytearray(1)], -1, _NOWAIT) == 1
    except OSError:
        return False
    finally:
        a.close()
        b.close()


# VIRTSERVE_RAWIO=0 keeps every bind on the loop's transports (for A/B measurements).
ENABLED = os.environ.get("VIRTSERVE_RAWIO", "1") != "0" and _nowait_on_sockets()
