"""Opening a connection to a real server: plain, TLS, and with a PROXY header first.

The PROXY header goes before the TLS handshake, so those connections are made on a socket we
connect ourselves: the header is written, then the loop wraps the socket (TLS when asked) and
the protocol sees one connection_made, as with any other server connection.

`Connecting` runs such an opening without a Task: a Task per connection (its creation, the
call_soon of its first step, the engine's bookkeeping of it) was a measurable share of the
CPU an L4 connection costs."""
from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING, Any, Callable, Coroutine

from virtserve.engine import proxyproto

if TYPE_CHECKING:
    from virtserve.engine.backend import Server
    from virtserve.schedulers.base import PickContext


def server_connection(loop: asyncio.AbstractEventLoop, factory: Callable[[], Any], server: Server,
                      ctx: PickContext, client: asyncio.Transport) -> Coroutine[Any, Any, Any]:
    """What opens a connection to server, as a coroutine to await or to drive with Connecting.
    Plain servers get the loop's own create_connection (no coroutine of ours around it)."""
    if server.ssl is None and not server.send_proxy:
        return loop.create_connection(factory, server.address, server.port)  # type: ignore[return-value]
    return open_server(loop, factory, server, ctx, client)


class Connecting:
    """Drives a coroutine that opens a connection, from the done callbacks of the futures it
    waits on, and calls `done(None)` when it returns or `done(exc)` when it raises. start()
    runs it up to its first wait at once (the socket and its connect() syscall, no loop turn).

    The coroutine resumes as it would in a Task (a finished future's callbacks run from the
    loop), without the Task. cancel() cancels the future it waits on: the coroutine sees
    CancelledError there (uvloop's create_connection then closes its socket) and `done` gets it."""

    __slots__ = ("coro", "done", "waiting", "loop", "cancelling")

    def __init__(self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any],
                 done: Callable[[BaseException | None], None]) -> None:
        self.loop = loop
        self.coro = coro
        self.done = done
        self.waiting: asyncio.Future[Any] | None = None
        self.cancelling = False

    def start(self) -> None:
        """Run the coroutine to its first wait (`done` may be called before this returns)."""
        self._step(None)

    def _step(self, _finished: Any) -> None:
        self.waiting = None
        try:
            if self.cancelling:  # cancelled between two steps, waiting on nothing
                self.cancelling = False
                awaited = self.coro.throw(asyncio.CancelledError())
            else:
                awaited = self.coro.send(None)
        except StopIteration:
            self.done(None)
            return
        except BaseException as exc:  # noqa: B036 - CancelledError included: the caller decides
            self.done(exc)
            return
        if awaited is None:  # a bare yield (asyncio.sleep(0)): resume on the next iteration
            self.loop.call_soon(self._step, None)
            return
        if getattr(awaited, "_asyncio_future_blocking", None) is not True:
            # Not a future awaited the asyncio way: fail the attempt as a Task would.
            self.coro.close()
            self.done(RuntimeError(f"connect coroutine yielded {awaited!r}, not a future"))
            return
        awaited._asyncio_future_blocking = False  # what a Task does with an awaited future
        self.waiting = awaited
        awaited.add_done_callback(self._step)

    def cancel(self) -> None:
        waiting = self.waiting
        if waiting is not None:
            waiting.cancel()
        else:
            self.cancelling = True


async def open_server(loop: asyncio.AbstractEventLoop, factory: Callable[[], Any], server: Server,
                      ctx: PickContext, client: asyncio.Transport) -> Any:
    """The protocol of a new connection to server (the caller bounds the time)."""
    tls = server.ssl
    if not server.send_proxy:
        if tls is None:
            return (await loop.create_connection(factory, server.address, server.port))[1]
        return (await loop.create_connection(factory, server.address, server.port, ssl=tls,
                                             server_hostname=server.sni or server.address))[1]
    infos = await loop.getaddrinfo(server.address, server.port, type=socket.SOCK_STREAM)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        await loop.sock_connect(sock, address)
        local = client.get_extra_info("sockname")
        header = proxyproto.build(server.send_proxy, (ctx.client_ip, ctx.client_port) if ctx.client_ip else None,
                                  local[:2] if local else None)
        await loop.sock_sendall(sock, header)
    except BaseException:
        sock.close()
        raise
    # From here the transport owns the socket (and closes it if the handshake fails).
    if tls is None:
        return (await loop.create_connection(factory, sock=sock))[1]
    return (await loop.create_connection(factory, sock=sock, ssl=tls,
                                         server_hostname=server.sni or server.address))[1]
