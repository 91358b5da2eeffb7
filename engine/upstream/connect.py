"""Opening a connection to a real server: plain, TLS, and with a PROXY header first.

The PROXY header goes before the TLS handshake, so those connections are made on a socket we
connect ourselves: the header is written, then the loop wraps the socket (TLS when asked) and
the protocol sees one connection_made, as with any other server connection."""
from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING, Any, Callable

from virtserve.engine import proxyproto

if TYPE_CHECKING:
    from virtserve.engine.backend import Server
    from virtserve.schedulers.base import PickContext


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
