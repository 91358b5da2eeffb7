"""The link between a worker group's parent and one worker: JSON objects, one per line, over one
end of a socketpair. Messages are small (a server's check verdict, a runtime command) and rare
(check intervals, operator actions), so text costs nothing that matters and reads well in a trace."""
from __future__ import annotations

import asyncio
import json
import socket
from typing import Any, Callable

Message = dict[str, Any]
MAX_LINE = 1 << 20  # a runtime command's answer (show stat of a big config) stays well below


class Channel(asyncio.Protocol):
    def __init__(self, on_message: Callable[[Message], None],
                 on_lost: Callable[[], None] | None = None) -> None:
        self.on_message = on_message
        self.on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self._buffer = b""

    @classmethod
    async def open(cls, sock: socket.socket, on_message: Callable[[Message], None],
                   on_lost: Callable[[], None] | None = None) -> Channel:
        channel = cls(on_message, on_lost)
        await asyncio.get_running_loop().connect_accepted_socket(lambda: channel, sock)
        return channel

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        if len(self._buffer) > MAX_LINE:
            raise ValueError("group channel: message too long")
        for line in lines:
            if line:
                self.on_message(json.loads(line))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.on_lost is not None:
            self.on_lost()

    def send(self, message: Message) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode(message))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def encode(message: Message) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def read_first(sock: socket.socket, timeout: float) -> Message | None:
    """Blocking, before the worker's event loop exists: the parent's first message (it sends
    nothing else until the worker says it is ready, so no byte after the line is lost).
    None when the parent closed the link (it is stopping)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
    finally:
        sock.settimeout(None)
    return json.loads(data)
