"""The runtime API on a UNIX stream socket (`stats socket PATH level admin`), and its client.

As HAProxy's non-interactive mode: the client sends one line (commands separated by ';'), reads
the answer until the server closes. `prompt` is not supported: one line per connection.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import socket as _socket
import stat

from virtserve.engine.admin.runtime import Runtime

MAX_LINE = 64 * 1024


class RuntimeSocket:
    def __init__(self, runtime: Runtime, path: str) -> None:
        self.runtime = runtime
        self.path = path
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        # A socket file left by a process that died is replaced; a live one is an error.
        if os.path.exists(self.path) and stat.S_ISSOCK(os.stat(self.path).st_mode):
            if _alive(self.path):
                raise OSError(f"stats socket {self.path}: another process is listening on it")
            os.unlink(self.path)
        self._server = await asyncio.start_unix_server(self._handle, self.path, limit=MAX_LINE)
        os.chmod(self.path, 0o600)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10.0)
            answer = self.runtime.execute(line.decode("utf-8", "replace").strip())
            writer.write(answer.encode())
            await writer.drain()
        except (ConnectionError, TimeoutError, ValueError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


def _alive(path: str) -> bool:
    with _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
        except OSError:
            return False
    return True


def send(path: str, command: str, timeout: float = 10.0) -> str:
    """The client: `virtserve ctl PATH COMMAND` (blocking; for the CLI and scripts)."""
    with _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")
